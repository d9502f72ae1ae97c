//! Strings by small integer id, for aggregation keys that would otherwise hash strings per row.

use perfpack_schema::fxhash::FxHashMap;

/// Interned strings; remembers the last one looked up, since runs of equal values are common.
#[derive(Debug, Default)]
pub struct Interner {
    ids: FxHashMap<String, u32>,
    names: Vec<String>,
    last: Option<u32>,
}

impl Interner {
    /// The id of `s`, interning it on first sight.
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(l) = self.last
            && self.names[l as usize] == s
        {
            return l;
        }
        let id = match self.ids.get(s) {
            Some(&id) => id,
            None => {
                let id = self.names.len() as u32;
                self.ids.insert(s.to_string(), id);
                self.names.push(s.to_string());
                id
            }
        };
        self.last = Some(id);
        id
    }

    /// The id of `s` if it was interned.
    pub fn find(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    /// The string of an id this interner gave out.
    pub fn get(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// Every interned string, in id order.
    pub fn all(&self) -> &[String] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_stable_and_dense() {
        let mut i = super::Interner::default();
        assert_eq!(i.id("a"), 0);
        assert_eq!(i.id("b"), 1);
        assert_eq!(i.id("a"), 0);
        assert_eq!(i.get(1), "b");
        assert_eq!(i.find("c"), None);
        assert_eq!(i.all(), ["a", "b"]);
    }
}
