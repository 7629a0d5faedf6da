//! Sizes in settings: `2GiB`, `512MiB`, `64KiB`, `1G` (SI units count in powers of 1000),
//! plain bytes, or `off` where a limit may be switched off.

use std::str::FromStr;

/// A size in bytes (`2GiB`, `512MiB`, `1G`, `1500000`), or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<u64>);

impl FromStr for Limit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") || text.eq_ignore_ascii_case("none") {
            return Ok(Limit(None));
        }
        text.parse::<bytesize::ByteSize>()
            .map(|size| Limit(Some(size.as_u64())))
            .map_err(|_| format!("{text:?} is not a size: write e.g. 2GiB, 512MiB or off"))
    }
}

/// A size limit the agent's tools enforce: at least 1 KiB, as a smaller one would refuse
/// everything the agent does.
pub fn parse_tool_limit(text: &str) -> Result<usize, String> {
    match text.parse::<Limit>()? {
        Limit(Some(bytes)) if bytes >= 1024 => usize::try_from(bytes).map_err(|_| format!("{text:?} is too big")),
        Limit(Some(_)) => Err(format!("{text:?} is too small: a size limit must be at least 1KiB")),
        Limit(None) => Err(format!("{text:?}: this limit cannot be switched off")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_or_off() {
        assert_eq!("2GiB".parse(), Ok(Limit(Some(2 << 30))));
        assert_eq!("512 MiB".parse(), Ok(Limit(Some(512 << 20))));
        assert_eq!("1500000".parse(), Ok(Limit(Some(1_500_000))));
        assert_eq!("off".parse(), Ok(Limit(None)));
        assert!("two gigs".parse::<Limit>().unwrap_err().contains("not a size"));
    }

    #[test]
    fn tool_limits_are_at_least_one_kib_and_never_off() {
        assert_eq!(parse_tool_limit("1MiB"), Ok(1 << 20));
        assert_eq!(parse_tool_limit(" 64 KiB "), Ok(64 << 10));
        assert!(parse_tool_limit("10").unwrap_err().contains("at least 1KiB"));
        assert!(parse_tool_limit("off").unwrap_err().contains("cannot be switched off"));
    }
}
