//! The macro behind the one list of stage kinds (invoked in `stages/mod.rs`): each line names a
//! `stage:` value, the stage's module and its configuration type, and becomes
//!
//! - the module declaration (`pub mod filter;`),
//! - a variant of `StageSpec`, the pipeline entry: an enum tagged by `stage` (the job file's
//!   format) with its (de)serialization,
//! - the dispatch from an entry to its [`super::config::StageConfig`] (checks, columns,
//!   constructor).
//!
//! So adding a stage is its own file plus one line of the list.

/// See the module documentation.
macro_rules! stage_registry {
    ($( $kind:literal => $module:ident :: $config:ident as $variant:ident, )*) => {
        $( pub mod $module; )*

        /// One pipeline entry: the `stage` tag picks the method, the other keys are that
        /// method's configuration.
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(tag = "stage", rename_all = "snake_case")]
        pub enum StageSpec {
            $( #[serde(rename = $kind)] $variant($module::$config), )*
        }

        impl StageSpec {
            /// Every `stage:` name this build knows.
            pub const KINDS: &'static [&'static str] = &[$($kind),*];

            /// The `stage:` name of this entry.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( StageSpec::$variant(_) => $kind, )*
                }
            }

            /// This entry's configuration.
            pub fn config(&self) -> &dyn config::StageConfig {
                match self {
                    $( StageSpec::$variant(c) => c, )*
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for StageSpec {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_map(StageVisitor)
            }
        }

        struct StageVisitor;

        impl<'de> serde::de::Visitor<'de> for StageVisitor {
            type Value = StageSpec;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a pipeline stage (a map with a `stage` key)")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StageSpec, A::Error> {
                let (kind, before) = tagged::read_tag(&mut map, "stage", StageSpec::KINDS)?;
                let rest = serde::de::value::MapAccessDeserializer::new(
                    tagged::ReplayThenRest::new(before, map),
                );
                match kind {
                    $( $kind => <$module::$config as serde::Deserialize>::deserialize(rest)
                        .map(StageSpec::$variant), )*
                    _ => unreachable!("read_tag returns one of KINDS"),
                }
            }
        }
    };
}

pub(crate) use stage_registry;
