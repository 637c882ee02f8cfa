//! `limit` and `offset`: the paging parameters every listing takes, parsed by hand so that
//! a bad value is a 400 naming the parameter.
//!
//! Must never: let a client ask for more than [`LIMIT_MAX`] items in one page.

use super::ApiError;

/// Items per page when `limit` is absent.
pub const LIMIT_DEFAULT: u32 = 100;
/// The largest `limit` accepted.
pub const LIMIT_MAX: u32 = 1000;

/// One page's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    pub limit: u32,
    pub offset: u64,
}

impl Paging {
    /// Parse the raw `limit` and `offset` query values.
    pub fn parse(limit: Option<&str>, offset: Option<&str>) -> Result<Paging, ApiError> {
        let limit = match limit {
            None => LIMIT_DEFAULT,
            Some(raw) => match raw.trim().parse::<u32>() {
                Ok(n) if (1..=LIMIT_MAX).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_param(
                        "limit",
                        format!("must be an integer from 1 to {LIMIT_MAX}"),
                    ))
                }
            },
        };
        let offset = match offset {
            None => 0,
            // stores keep offsets in a signed 64-bit integer
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(n) if n >= 0 => n as u64,
                _ => {
                    return Err(ApiError::bad_param(
                        "offset",
                        "must be a non-negative integer",
                    ))
                }
            },
        };
        Ok(Paging { limit, offset })
    }
}

/// Parse a boolean query value: `true`/`false`/`1`/`0`.
pub fn parse_flag(name: &str, raw: Option<&str>) -> Result<bool, ApiError> {
    match raw.map(str::trim) {
        None => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(_) => Err(ApiError::bad_param(name, "must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_offsets() {
        assert_eq!(
            Paging::parse(None, None).expect("defaults"),
            Paging {
                limit: 100,
                offset: 0
            }
        );
        assert_eq!(
            Paging::parse(Some("1000"), Some("5")).expect("max"),
            Paging {
                limit: 1000,
                offset: 5
            }
        );
        for bad in ["0", "1001", "-1", "ten", "", "99999999999"] {
            let e = Paging::parse(Some(bad), None).expect_err(bad);
            assert!(e.to_string().contains("\"limit\""), "{e}");
        }
        assert!(Paging::parse(None, Some("-3")).is_err());
        assert!(Paging::parse(None, Some("18446744073709551615")).is_err());
        assert!(parse_flag("include_deleted", Some("yes")).is_err());
        assert!(parse_flag("include_deleted", Some("1")).expect("flag"));
    }
}
