//! Reading an internally tagged map (`stage: judge` plus that stage's fields) without losing
//! where an error is.
//!
//! serde's derived internally tagged enums buffer the whole map before choosing the variant, so
//! a YAML error inside a stage loses its line and its path (`pipeline: unknown field ...` at the
//! line of the list). Here the tag is read first and the rest of the map is handed to the
//! chosen configuration straight from the parser, so `pipeline[2].threshold: ... at line 14`
//! survives. Keys written before the tag are buffered and replayed first (their errors keep the
//! key's name, not its line).

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess};

/// Entries of a map read before its tag, in order.
pub type Entries = Vec<(String, serde_norway::Value)>;

/// A map's entries before the tag, replayed ahead of the rest of the live map.
pub struct ReplayThenRest<A> {
    buffered: std::vec::IntoIter<(String, serde_norway::Value)>,
    pending: Option<(String, serde_norway::Value)>,
    rest: A,
}

impl<A> ReplayThenRest<A> {
    pub fn new(buffered: Entries, rest: A) -> Self {
        ReplayThenRest {
            buffered: buffered.into_iter(),
            pending: None,
            rest,
        }
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for ReplayThenRest<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.buffered.next() {
            Some((key, value)) => {
                self.pending = Some((key.clone(), value));
                let de: de::value::StringDeserializer<A::Error> = key.into_deserializer();
                seed.deserialize(de).map(Some)
            }
            None => self.rest.next_key_seed(seed),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        match self.pending.take() {
            // A replayed value has no position of its own: name its key in the error.
            Some((key, value)) => seed
                .deserialize(value)
                .map_err(|e| de::Error::custom(format!("{key}: {e}"))),
            None => self.rest.next_value_seed(seed),
        }
    }
}

/// Reads map entries up to the `tag` key and returns the tag's value (checked by `kinds`) with
/// the entries read before it.
pub fn read_tag<'de, A: MapAccess<'de>>(
    map: &mut A,
    tag: &'static str,
    kinds: &'static [&'static str],
) -> Result<(&'static str, Entries), A::Error> {
    let mut before = Vec::new();
    loop {
        match map.next_key::<String>()? {
            None => return Err(de::Error::missing_field(tag)),
            Some(k) if k == tag => {
                let kind = map.next_value_seed(KindSeed { tag, kinds })?;
                return Ok((kind, before));
            }
            Some(k) => {
                let v = map.next_value::<serde_norway::Value>()?;
                before.push((k, v));
            }
        }
    }
}

/// The tag's value, one of `kinds`.
struct KindSeed {
    tag: &'static str,
    kinds: &'static [&'static str],
}

impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = &'static str;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        // Checked inside the visitor, so the parser attaches the tag's own path and line.
        d.deserialize_str(self)
    }
}

impl<'de> de::Visitor<'de> for KindSeed {
    type Value = &'static str;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a {} name ({})", self.tag, self.kinds.join(", "))
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        self.kinds
            .iter()
            .copied()
            .find(|k| *k == name)
            .ok_or_else(|| {
                let guess = crate::suggest::closest(name, self.kinds)
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default();
                E::custom(format!(
                    "unknown {} `{name}`{guess} (known: {})",
                    self.tag,
                    self.kinds.join(", ")
                ))
            })
    }
}
