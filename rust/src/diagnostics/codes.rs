//! The severity every finding has, and the rule-code enums (`rule_codes!`).

use serde::{Deserialize, Serialize};

/// How bad a finding is, for every producer. `check` fails (status 1) on an
/// error; `doctor` calls an error a failed check (the VM cannot start, JSON
/// `"fail"`), a warning `"warn"`, and a passed check info (`"ok"`);
/// `discover` lists errors and warnings as problems and info as notes.
/// Ordered most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    /// Worth knowing, nothing to fix.
    Info,
}

impl Severity {
    /// `error`, `warning`, `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// Defines a rule-code enum: each variant has a stable kebab-case code
/// (`code()`), `ALL` lists the variants in order, `Display` and serde use the
/// code, and the enum compares with a `&str` code.
///
/// ```text
/// rule_codes! {
///     /// What the doctor checks.
///     pub enum CheckCode {
///         /// IOMMU groups exist.
///         Iommu = "iommu",
///     }
/// }
/// ```
macro_rules! rule_codes {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every code, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The stable code, as in JSON and on the terminal.
            pub fn code(self) -> &'static str {
                match self {
                    $( $name::$variant => $code, )+
                }
            }

            /// The variant of a code.
            pub fn from_code(code: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|c| c.code() == code)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.code() == *other
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.code() == other
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.code())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::from_code(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown code `{text}`, expected one of: {}",
                        $name::ALL.iter().map(|c| c.code()).collect::<Vec<_>>().join(", ")
                    ))
                })
            }
        }
    };
}
pub(crate) use rule_codes;

#[cfg(test)]
mod tests {
    use super::*;

    rule_codes! {
        /// Codes of a test.
        enum Demo {
            /// The first.
            First = "first",
            TwoWords = "two-words",
        }
    }

    #[test]
    fn rule_codes_have_stable_codes_in_json() {
        assert_eq!(Demo::TwoWords.code(), "two-words");
        assert_eq!(Demo::ALL, [Demo::First, Demo::TwoWords]);
        assert_eq!(Demo::from_code("first"), Some(Demo::First));
        assert_eq!(Demo::from_code("First"), None);
        assert!(Demo::TwoWords == "two-words");
        assert_eq!(Demo::First.to_string(), "first");
        assert_eq!(
            serde_json::to_string(&Demo::TwoWords).unwrap(),
            "\"two-words\""
        );
        let back: Demo = serde_json::from_str("\"two-words\"").unwrap();
        assert_eq!(back, Demo::TwoWords);
        let err = serde_json::from_str::<Demo>("\"three\"").unwrap_err();
        assert!(err.to_string().contains("first, two-words"), "{err}");
    }
    #[test]
    fn severities_order_most_severe_first() {
        let mut v = vec![Severity::Info, Severity::Error, Severity::Warning];
        v.sort();
        assert_eq!(v, [Severity::Error, Severity::Warning, Severity::Info]);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            "[\"error\",\"warning\",\"info\"]"
        );
    }
}
