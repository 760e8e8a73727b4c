//! Writer schemas by id, fetched once and kept in a bounded map.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use vigil_events::WriterSchema;

use crate::client::Client;
use crate::error::RegistryError;

/// Writer schemas by registry id: the first lookup of an id fetches and parses it, later ones are
/// a map read. Holds at most `capacity` schemas (the oldest fetched is forgotten first; registry
/// ids are immutable, so a forgotten schema is simply fetched again). Failed lookups are not
/// kept: the caller decides whether to retry ([`RegistryError::retriable`]) or dead-letter.
/// Share it (`Arc<Cache>`) across tasks.
#[derive(Debug)]
pub struct Cache {
    client: Client,
    capacity: usize,
    entries: Mutex<Entries>,
    /// One fetch at a time: concurrent misses for the same id wait for the first and then find it.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Entries {
    by_id: HashMap<u32, Arc<WriterSchema>>,
    order: VecDeque<u32>,
    fetched: u64,
}

impl Cache {
    /// `capacity` is clamped to at least 1.
    pub fn new(client: Client, capacity: usize) -> Self {
        Self {
            client,
            capacity: capacity.max(1),
            entries: Mutex::new(Entries::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The writer schema registered under `id`.
    pub async fn schema(&self, id: u32) -> Result<Arc<WriterSchema>, RegistryError> {
        if let Some(found) = self.cached(id) {
            return Ok(found);
        }
        let _one_fetch = self.fetching.lock().await;
        if let Some(found) = self.cached(id) {
            return Ok(found);
        }
        let text = self.client.schema_text(id).await?;
        let schema =
            Arc::new(WriterSchema::parse(&text).map_err(|source| RegistryError::BadSchema { id, source })?);
        let mut entries = self.entries.lock().expect("schema cache lock");
        entries.fetched += 1;
        if entries.by_id.len() >= self.capacity {
            if let Some(oldest) = entries.order.pop_front() {
                entries.by_id.remove(&oldest);
            }
        }
        entries.by_id.insert(id, schema.clone());
        entries.order.push_back(id);
        tracing::debug!(id, fingerprint = schema.fingerprint(), "schema fetched from the registry");
        Ok(schema)
    }

    /// The schema under `id` if it is cached, without asking the registry.
    pub fn cached(&self, id: u32) -> Option<Arc<WriterSchema>> {
        self.entries.lock().expect("schema cache lock").by_id.get(&id).cloned()
    }

    /// How many schemas are held now.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("schema cache lock").by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many schemas were fetched from the registry since the cache was made.
    pub fn fetched(&self) -> u64 {
        self.entries.lock().expect("schema cache lock").fetched
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}
