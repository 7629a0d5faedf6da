//! Size limits on what the agent writes, sends and gets back, from the command line and the
//! environment.

use forgeai_code_agent::SizeLimits;

use crate::size::parse_tool_limit;

/// See the README's security model.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Most bytes of one file written by the agent's tools or by an edit through the API.
    #[arg(long, global = true, env = "FORGEAI_MAX_FILE_BYTES", default_value = "1MiB", value_parser = parse_tool_limit)]
    pub max_file_bytes: usize,
    /// Most bytes of the arguments of one tool call the model makes.
    #[arg(long, global = true, env = "FORGEAI_MAX_TOOL_CALL_BYTES", default_value = "4MiB", value_parser = parse_tool_limit)]
    pub max_tool_call_bytes: usize,
    /// Most bytes of one tool result sent back to the model (longer ones are cut in the middle).
    #[arg(long, global = true, env = "FORGEAI_MAX_TOOL_RESULT_BYTES", default_value = "64KiB", value_parser = parse_tool_limit)]
    pub max_tool_result_bytes: usize,
    /// Most bytes of a fragment's files (paths and contents; text sources only).
    #[arg(long, global = true, env = "FORGEAI_MAX_FRAGMENT_BYTES", default_value = "8MiB", value_parser = parse_tool_limit)]
    pub max_fragment_bytes: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> SizeLimits {
        SizeLimits {
            max_file_bytes: self.max_file_bytes,
            max_tool_call_bytes: self.max_tool_call_bytes,
            max_tool_result_bytes: self.max_tool_result_bytes,
            max_fragment_bytes: self.max_fragment_bytes,
        }
    }
}
