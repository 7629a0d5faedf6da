//! The model API (any OpenAI-compatible chat-completions server) and Unsplash, from the command
//! line and the environment. The library crates read no environment variables: their configs
//! are filled here.

use std::str::FromStr;
use std::time::Duration;

use forgeai_code_agent::{DEFAULT_UNSPLASH_API_URL, Unsplash};
use forgeai_llm::{
    DEFAULT_BASE_URL, DEFAULT_CODER_MODEL, DEFAULT_MAX_RETRIES, DEFAULT_NAMER_MODEL, DEFAULT_REQUEST_TIMEOUT_SECS,
    DEFAULT_VISION_MODEL, LlmConfig,
};

/// See the README's "Configuration".
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// The OpenAI-compatible API (OpenAI, OpenRouter, vLLM, Ollama, llama.cpp, ...).
    #[arg(long, global = true, env = "OPENAI_BASE_URL", default_value = DEFAULT_BASE_URL,
        value_parser = or_default(DEFAULT_BASE_URL.to_owned()))]
    pub openai_base_url: String,
    /// The model API's key, sent as `Authorization: Bearer <key>` (none: no such header, as
    /// local servers expect).
    #[arg(long, global = true, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,
    /// The coding agent's model.
    #[arg(long, global = true, env = "FORGEAI_CODER_MODEL", default_value = DEFAULT_CODER_MODEL,
        value_parser = or_default(DEFAULT_CODER_MODEL.to_owned()))]
    pub coder_model: String,
    /// The model that reads design specs from images.
    #[arg(long, global = true, env = "FORGEAI_VISION_MODEL", default_value = DEFAULT_VISION_MODEL,
        value_parser = or_default(DEFAULT_VISION_MODEL.to_owned()))]
    pub vision_model: String,
    /// The model that names projects and fragments.
    #[arg(long, global = true, env = "FORGEAI_NAMER_MODEL", default_value = DEFAULT_NAMER_MODEL,
        value_parser = or_default(DEFAULT_NAMER_MODEL.to_owned()))]
    pub namer_model: String,
    /// Retries of a failed model request (429, 5xx, network errors), with exponential backoff.
    #[arg(long, global = true, env = "FORGEAI_LLM_MAX_RETRIES", default_value_t = DEFAULT_MAX_RETRIES,
        value_parser = or_default(DEFAULT_MAX_RETRIES))]
    pub llm_max_retries: u32,
    /// Seconds one model request may take (for streamed answers: until the answer starts).
    #[arg(long, global = true, env = "FORGEAI_LLM_TIMEOUT_SECS", default_value_t = DEFAULT_REQUEST_TIMEOUT_SECS,
        value_parser = or_default(DEFAULT_REQUEST_TIMEOUT_SECS))]
    pub llm_timeout_secs: u64,
    /// Unsplash's access key, for photos in generated apps (none: the agent builds without
    /// photos).
    #[arg(long, global = true, env = "UNSPLASH_ACCESS_KEY", hide_env_values = true)]
    pub unsplash_access_key: Option<String>,
    /// The Unsplash API.
    #[arg(long, global = true, env = "UNSPLASH_API_URL", default_value = DEFAULT_UNSPLASH_API_URL,
        value_parser = or_default(DEFAULT_UNSPLASH_API_URL.to_owned()))]
    pub unsplash_api_url: String,
}

impl ModelArgs {
    /// The model client's config.
    pub fn llm_config(&self) -> LlmConfig {
        let mut config = LlmConfig::new(&self.openai_base_url, self.openai_api_key.clone());
        config.coder_model = self.coder_model.clone();
        config.vision_model = self.vision_model.clone();
        config.namer_model = self.namer_model.clone();
        config.max_retries = self.llm_max_retries;
        config.request_timeout = Duration::from_secs(self.llm_timeout_secs);
        config
    }

    pub fn unsplash(&self) -> Unsplash {
        Unsplash::new(&self.unsplash_api_url, self.unsplash_access_key.clone())
    }
}

/// A setting's value, trimmed; an empty one (`OPENAI_BASE_URL=` in an env file) stands for the
/// default, as it did when the library read these variables itself.
fn or_default<T>(default: T) -> impl Fn(&str) -> Result<T, T::Err> + Clone + Send + Sync + 'static
where
    T: FromStr + Clone + Send + Sync + 'static,
{
    move |text: &str| match text.trim() {
        "" => Ok(default.clone()),
        text => text.parse(),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        model: ModelArgs,
    }

    /// The arguments alone, whatever this process's environment holds.
    fn try_parse(args: &[&str]) -> Result<ModelArgs, clap::Error> {
        let matches = Cli::command()
            .mut_args(|arg| arg.env(None::<&'static str>))
            .try_get_matches_from(std::iter::once("forgeai").chain(args.iter().copied()))?;
        Ok(Cli::from_arg_matches(&matches)?.model)
    }

    fn parse(args: &[&str]) -> ModelArgs {
        try_parse(args).expect("the settings parse")
    }

    #[test]
    fn defaults_are_the_libraries() {
        let args = parse(&[]);
        let config = args.llm_config();
        assert_eq!(config, LlmConfig::default());
        assert_eq!(config.coder_model, "gpt-5.2");
        assert_eq!(config.vision_model, "gpt-4o-2024-08-06");
        assert_eq!(config.namer_model, "gpt-5.2");
        assert_eq!(config.max_retries, 4);
        assert_eq!(config.request_timeout, Duration::from_secs(600));
        assert_eq!(args.unsplash_api_url, "https://api.unsplash.com");
        assert!(!args.unsplash().is_configured());
    }

    #[test]
    fn values_are_trimmed_and_empty_ones_mean_the_default() {
        let args = parse(&[
            "--openai-base-url",
            "http://localhost:11434/v1/",
            "--openai-api-key",
            "  ",
            "--coder-model",
            " qwen2.5-coder ",
            "--vision-model",
            "llava",
            "--namer-model",
            "",
            "--llm-max-retries",
            "2",
            "--llm-timeout-secs",
            " ",
            "--unsplash-access-key",
            "",
        ]);
        let config = args.llm_config();
        assert_eq!(config.api_key, None);
        assert_eq!(config.coder_model, "qwen2.5-coder");
        assert_eq!(config.vision_model, "llava");
        assert_eq!(config.namer_model, "gpt-5.2");
        assert_eq!(config.max_retries, 2);
        assert_eq!(config.request_timeout, Duration::from_secs(600));
        assert_eq!(
            config.chat_completions_url(),
            "http://localhost:11434/v1/chat/completions"
        );
        assert!(!args.unsplash().is_configured());
    }

    #[test]
    fn a_number_that_is_not_one_is_an_error() {
        let error = try_parse(&["--llm-max-retries", "many"]).expect_err("an error");
        assert!(error.to_string().contains("--llm-max-retries"), "{error}");
    }
}
