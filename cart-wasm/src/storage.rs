//! Where the client keeps its state: localStorage in a browser, memory elsewhere (Node, tests,
//! a browser with storage disabled). Behind a small trait so the engine never sees a browser type.

use shared::sort::SortedMap;
use std::cell::RefCell;
use std::rc::Rc;

/// Why a write did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// The origin's storage quota is used up.
    Full,
    /// Storage refused for another reason (disabled, private mode).
    Unavailable(String),
}

pub trait Storage {
    fn get(&self, key: &str) -> Option<String>;
    fn set(&self, key: &str, value: &str) -> Result<(), StorageError>;
    fn remove(&self, key: &str);
    /// Every key that starts with `prefix`.
    fn keys_with_prefix(&self, prefix: &str) -> Vec<String>;
    /// Grows whenever someone else may have written: a client that saw the same generation
    /// before has nothing new to read. (localStorage: another tab's write, told by the `storage`
    /// event; memory: any write.)
    fn generation(&self) -> u64;
}

/// Storage in memory, shareable between several clients to stand for the tabs of one origin.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    map: Rc<RefCell<SortedMap<String, String>>>,
    writes: Rc<std::cell::Cell<u64>>,
    /// Writes beyond this many bytes in total fail as a full quota would (for tests).
    pub quota: Option<usize>,
}

impl MemoryStorage {
    pub fn with_quota(quota: usize) -> Self {
        MemoryStorage { quota: Some(quota), ..Default::default() }
    }
}

impl Storage for MemoryStorage {
    fn get(&self, key: &str) -> Option<String> {
        self.map.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &str) -> Result<(), StorageError> {
        let mut map = self.map.borrow_mut();
        if let Some(q) = self.quota {
            let others: usize = map.iter().filter(|(k, _)| k.as_str() != key).map(|(k, v)| k.len() + v.len()).sum();
            if others + key.len() + value.len() > q {
                return Err(StorageError::Full);
            }
        }
        map.insert(key.to_owned(), value.to_owned());
        self.writes.set(self.writes.get() + 1);
        Ok(())
    }

    fn remove(&self, key: &str) {
        if self.map.borrow_mut().remove(key).is_some() {
            self.writes.set(self.writes.get() + 1);
        }
    }

    fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.map.borrow().keys().filter(|k| k.starts_with(prefix)).cloned().collect()
    }

    fn generation(&self) -> u64 {
        self.writes.get()
    }
}
