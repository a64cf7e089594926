//! `counters.toml`: which root-of-trust counter holds each component's
//! security version.
//!
//! A root of trust has numbered monotonic counters (a TPM's NV indices);
//! components are named by UUID. This map assigns each component the next
//! free index the first time the device sees a *verified* package of it, and
//! never reassigns or reuses one. It is written atomically.
//!
//! Gap, stated plainly: the map itself is an ordinary file. Whoever can write
//! the state directory could point a component at a fresh counter (reading
//! 0) and so roll it back; with the `soft` backend they could as well delete
//! the counter file. A TPM backend should keep the map where only the runtime
//! can change it (an NV index, or derived indices).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sevenfold_rot::CounterIndex;

use crate::{fsutil, AgentError};

/// File name inside the state directory.
pub(crate) const COUNTERS_FILE: &str = "counters.toml";
const MAX_COUNTERS_LEN: u64 = 1 << 20;
const HEADER: &str = "# Root-of-trust counter index of each component's security version.\n\
# Written by the Sevenfold agent; indices are allocated in order and never reused.\n";

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CountersFile {
    #[serde(default)]
    components: BTreeMap<String, u32>,
}

/// The component → counter index map of one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterMap {
    dir: PathBuf,
    map: BTreeMap<String, CounterIndex>,
}

impl CounterMap {
    /// Reads `dir/counters.toml`; a missing file is an empty map. Damage
    /// (bad TOML, an index out of range, an index used twice) fails closed.
    pub(crate) fn load(dir: &Path) -> Result<CounterMap, AgentError> {
        let path = dir.join(COUNTERS_FILE);
        let text = fsutil::read_text(&path, MAX_COUNTERS_LEN)?.unwrap_or_default();
        let file: CountersFile =
            toml::from_str(&text).map_err(|e| AgentError::corrupt(&path, e.to_string()))?;
        let mut map = BTreeMap::new();
        let mut used = std::collections::BTreeSet::new();
        for (component, index) in file.components {
            let index = CounterIndex::new(index).ok_or_else(|| {
                AgentError::corrupt(&path, format!("counter index {index} is out of range"))
            })?;
            if !used.insert(index) {
                return Err(AgentError::corrupt(
                    &path,
                    format!("counter index {index} is assigned to two components"),
                ));
            }
            map.insert(component, index);
        }
        Ok(CounterMap {
            dir: dir.to_path_buf(),
            map,
        })
    }

    /// The counter of `component`, if one was assigned.
    pub fn get(&self, component: &str) -> Option<CounterIndex> {
        self.map.get(component).copied()
    }

    /// All assignments, by component ID.
    pub fn iter(&self) -> impl Iterator<Item = (&str, CounterIndex)> {
        self.map.iter().map(|(c, i)| (c.as_str(), *i))
    }

    /// The counter of `component`, assigning the next free index (and
    /// saving the map) if it has none.
    pub(crate) fn get_or_allocate(&mut self, component: &str) -> Result<CounterIndex, AgentError> {
        if let Some(index) = self.get(component) {
            return Ok(index);
        }
        let next = match self.map.values().map(|i| i.get()).max() {
            None => 0,
            Some(max) => max.saturating_add(1),
        };
        let index = CounterIndex::new(next)
            .ok_or_else(|| AgentError::CountersExhausted(component.to_owned()))?;
        self.map.insert(component.to_owned(), index);
        if let Err(e) = self.save() {
            self.map.remove(component);
            return Err(e);
        }
        Ok(index)
    }

    fn save(&self) -> Result<(), AgentError> {
        let file = CountersFile {
            components: self.map.iter().map(|(c, i)| (c.clone(), i.get())).collect(),
        };
        let body = toml::to_string(&file).map_err(|e| {
            AgentError::corrupt(self.dir.join(COUNTERS_FILE), format!("cannot encode: {e}"))
        })?;
        fsutil::write_atomic(
            &self.dir,
            COUNTERS_FILE,
            format!("{HEADER}{body}").as_bytes(),
        )
    }

    /// Writes an empty map unless the file exists.
    pub(crate) fn create_empty(dir: &Path) -> Result<(), AgentError> {
        fsutil::write_new(dir, COUNTERS_FILE, HEADER.as_bytes()).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_is_sequential_and_persistent() {
        let dir = tempfile::tempdir().unwrap();
        CounterMap::create_empty(dir.path()).unwrap();
        let mut map = CounterMap::load(dir.path()).unwrap();
        assert_eq!(map.get_or_allocate("a").unwrap().get(), 0);
        assert_eq!(map.get_or_allocate("b").unwrap().get(), 1);
        assert_eq!(map.get_or_allocate("a").unwrap().get(), 0);
        let again = CounterMap::load(dir.path()).unwrap();
        assert_eq!(again, map);
        assert_eq!(again.get("b").map(CounterIndex::get), Some(1));
    }

    #[test]
    fn damaged_maps_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "[components]\na = 1\nb = 1\n",
            "[components]\na = 70000\n",
            "components = 3\n",
            "[components]\na = -1\n",
        ] {
            std::fs::write(dir.path().join(COUNTERS_FILE), bad).unwrap();
            assert!(
                matches!(
                    CounterMap::load(dir.path()),
                    Err(AgentError::CorruptState { .. })
                ),
                "{bad}"
            );
        }
    }
}
