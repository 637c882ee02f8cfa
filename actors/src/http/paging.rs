//! The listing conventions every list endpoint shares: `limit` and `offset` (parsed by hand
//! so that a bad value is a 400 naming the parameter), `sort=<field>` / `sort=-<field>` over
//! a fixed list of fields per endpoint, and the answer `{"total","items","limit","offset"}`
//! ([`ListPage`]).
//!
//! Must never: let a client ask for more than [`LIMIT_MAX`] items in one page, or pass a
//! client's sort field anywhere but through an endpoint's own list of fields.

use serde::Serialize;

use super::ApiError;

/// Items per page when `limit` is absent.
pub const LIMIT_DEFAULT: u32 = 100;
/// The largest `limit` accepted.
pub const LIMIT_MAX: u32 = 1000;

/// A query value; an empty one (`?cloud=`) is the same as an absent one.
pub fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// One page's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    pub limit: u32,
    pub offset: u64,
}

impl Paging {
    /// Parse the raw `limit` and `offset` query values; empty is the same as absent.
    pub fn parse(limit: Option<&str>, offset: Option<&str>) -> Result<Paging, ApiError> {
        let limit = match limit.filter(|s| !s.is_empty()) {
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
        let offset = match offset.filter(|s| !s.is_empty()) {
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

    /// This page of an in-memory list (of a size that does not grow with the estate:
    /// clouds, insights, nodes, a window of dead letters).
    pub fn slice<T>(&self, items: Vec<T>) -> Vec<T> {
        let skip = usize::try_from(self.offset).unwrap_or(usize::MAX);
        items
            .into_iter()
            .skip(skip)
            .take(self.limit as usize)
            .collect()
    }
}

/// A requested order: one of an endpoint's sort fields, ascending unless `-` came first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort<F> {
    pub field: F,
    pub descending: bool,
}

/// Parse `sort=<field>` or `sort=-<field>` against an endpoint's fields (name, value).
/// Absent or empty: `None` (the endpoint's natural order). Anything else is a 400 with
/// code `bad_sort` naming the fields allowed.
pub fn parse_sort<F: Copy>(
    raw: Option<&str>,
    fields: &[(&'static str, F)],
) -> Result<Option<Sort<F>>, ApiError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let (name, descending) = match raw.strip_prefix('-') {
        Some(rest) => (rest, true),
        None => (raw, false),
    };
    match fields.iter().find(|(n, _)| *n == name) {
        Some((_, field)) => Ok(Some(Sort {
            field: *field,
            descending,
        })),
        None => {
            let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
            Err(ApiError::BadRequest {
                code: "bad_sort",
                message: if names.is_empty() {
                    "query parameter \"sort\": this list has one fixed order".to_string()
                } else {
                    format!(
                        "query parameter \"sort\": must be one of {}, each optionally with a \
                         leading - for descending",
                        names.join(", ")
                    )
                },
            })
        }
    }
}

/// Sort an in-memory list by `key`, stably, descending when asked.
pub fn sort_by_key<T, K: Ord>(items: &mut [T], descending: bool, key: impl Fn(&T) -> K) {
    if descending {
        items.sort_by_key(|x| std::cmp::Reverse(key(x)));
    } else {
        items.sort_by_key(key);
    }
}

/// Every list answer: the page's items and the window that produced it.
#[derive(Serialize)]
pub struct ListPage<T> {
    /// Matches of the filters in all pages.
    pub total: u64,
    pub items: Vec<T>,
    pub limit: u32,
    pub offset: u64,
}

impl<T> ListPage<T> {
    pub fn new(total: u64, items: Vec<T>, paging: Paging) -> Self {
        ListPage {
            total,
            items,
            limit: paging.limit,
            offset: paging.offset,
        }
    }
}

/// Parse a boolean query value: `true`/`false`/`1`/`0`.
pub fn parse_flag(name: &str, raw: Option<&str>) -> Result<bool, ApiError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(false),
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
                limit: LIMIT_DEFAULT,
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
        for bad in ["0", "1001", "-1", "ten", "99999999999"] {
            let e = Paging::parse(Some(bad), None).expect_err(bad);
            assert!(e.to_string().contains("\"limit\""), "{e}");
        }
        assert!(Paging::parse(None, Some("-3")).is_err());
        assert!(Paging::parse(None, Some("18446744073709551615")).is_err());
        assert!(parse_flag("include_deleted", Some("yes")).is_err());
        assert!(parse_flag("include_deleted", Some("1")).expect("flag"));
    }

    #[test]
    fn sorts_name_a_field_of_the_list_or_are_refused() {
        const FIELDS: &[(&str, u8)] = &[("name", 1), ("last_seen", 2)];
        assert_eq!(parse_sort(None, FIELDS).expect("absent"), None);
        assert_eq!(parse_sort(Some(""), FIELDS).expect("empty"), None);
        assert_eq!(
            parse_sort(Some("name"), FIELDS).expect("asc"),
            Some(Sort {
                field: 1,
                descending: false
            })
        );
        assert_eq!(
            parse_sort(Some("-last_seen"), FIELDS).expect("desc"),
            Some(Sort {
                field: 2,
                descending: true
            })
        );
        for bad in ["properties", "--name", "name;drop table", "-", "+name"] {
            let e = parse_sort(Some(bad), FIELDS).expect_err(bad);
            assert_eq!(e.code(), "bad_sort", "{bad}");
            assert!(e.to_string().contains("name, last_seen"), "{e}");
        }
    }

    #[test]
    fn in_memory_pages_and_orders() {
        let p = Paging {
            limit: 2,
            offset: 1,
        };
        assert_eq!(p.slice(vec![1, 2, 3, 4]), vec![2, 3]);
        assert_eq!(
            Paging {
                limit: 2,
                offset: u64::MAX
            }
            .slice(vec![1]),
            Vec::<i32>::new()
        );
        let mut v = vec![("b", 1), ("a", 2), ("c", 1)];
        sort_by_key(&mut v, true, |x| x.1);
        assert_eq!(v, vec![("a", 2), ("b", 1), ("c", 1)], "stable, descending");
    }
}
