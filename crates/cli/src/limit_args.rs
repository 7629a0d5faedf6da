//! Size limits on what the agent writes, sends and gets back, from the command line and the
//! environment.

use forgeai_code_agent::SizeLimits;

/// See the README's security model.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Most bytes of one file written by the agent's tools or by an edit through the API.
    #[arg(long, global = true, env = "FORGEAI_MAX_FILE_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub max_file_bytes: usize,
    /// Most bytes of the arguments of one tool call the model makes.
    #[arg(long, global = true, env = "FORGEAI_MAX_TOOL_CALL_BYTES", default_value = "4MiB", value_parser = parse_size)]
    pub max_tool_call_bytes: usize,
    /// Most bytes of one tool result sent back to the model (longer ones are cut in the middle).
    #[arg(long, global = true, env = "FORGEAI_MAX_TOOL_RESULT_BYTES", default_value = "64KiB", value_parser = parse_size)]
    pub max_tool_result_bytes: usize,
    /// Most bytes of a fragment's files (paths and contents; text sources only).
    #[arg(long, global = true, env = "FORGEAI_MAX_FRAGMENT_BYTES", default_value = "8MiB", value_parser = parse_size)]
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

/// A size in bytes: a number with an optional unit, `KiB`/`MiB`/`GiB` (or `K`, `KB`, `M`, `MB`,
/// `G`, `GB`, all counted in powers of 1024), e.g. `1MiB`, `64KiB` or `1048576`; at least 1 KiB,
/// as a smaller limit would refuse everything the agent does.
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let not_a_size = || format!("{text:?} is not a size: write e.g. 1MiB, 64KiB or 1048576");
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().map_err(|_| not_a_size())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(not_a_size()),
    };
    let bytes = number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too big"))?;
    if bytes < 1024 {
        return Err(format!("{text:?} is too small: a size limit must be at least 1KiB"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size(" 64 KiB "), Ok(64 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert!(parse_size("1.5MiB").unwrap_err().contains("not a size"));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("10").unwrap_err().contains("at least 1KiB"));
    }
}
