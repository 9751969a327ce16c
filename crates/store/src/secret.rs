//! Values that must never reach a log line or a panic message whole.

use std::fmt;
use std::str::FromStr;

/// A database URL, which may hold a password: printed (`Debug`, `Display`) with everything
/// between the scheme and the host replaced by `***`, and any `password=` parameter too. Use
/// [`DatabaseUrl::expose`] to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, to hand to a driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its credentials hidden.
    pub fn redacted(&self) -> String {
        let text = &self.0;
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, text.as_str()),
        };
        let rest = match rest.split_once('@') {
            // Only an `@` before the path separates credentials from the host.
            Some((_, host)) if !rest[..rest.find('@').unwrap_or(0)].contains('/') => {
                format!("***@{host}")
            }
            _ => rest.to_owned(),
        };
        let rest = match rest.split_once('?') {
            Some((path, query)) => {
                let query: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                        _ => pair.to_owned(),
                    })
                    .collect();
                format!("{path}?{}", query.join("&"))
            }
            None => rest,
        };
        match scheme {
            Some(scheme) => format!("{scheme}://{rest}"),
            None => rest,
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print() {
        let cases = [
            (
                "postgres://app:s3cret@db:5432/audit",
                "postgres://***@db:5432/audit",
            ),
            (
                "postgres://db/audit?password=s3cret&sslmode=require",
                "postgres://db/audit?password=***&sslmode=require",
            ),
            ("postgres://db/audit", "postgres://db/audit"),
            ("postgres://db/a@b", "postgres://db/a@b"),
        ];
        for (url, shown) in cases {
            let url = DatabaseUrl::from(url);
            assert_eq!(url.to_string(), shown);
            assert!(!format!("{url:?}").contains("s3cret"));
        }
    }
}
