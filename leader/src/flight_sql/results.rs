//! Results executed for a `FlightInfo`, kept until their ticket's `DoGet`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

/// Executed results waiting for their `DoGet`: at most this many, this long.
const KEEP_RESULTS: usize = 64;
const RESULT_TTL: Duration = Duration::from_secs(600);

struct Pending {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    /// Order of arrival (the oldest goes first when full) and time of arrival.
    seq: u64,
    at: Instant,
}

/// Results executed for a `FlightInfo`, waiting for the `DoGet` of their ticket.
#[derive(Clone, Default)]
pub(super) struct Results {
    inner: Arc<Mutex<(u64, HashMap<String, Pending>)>>,
}

impl Results {
    /// Keeps a result and returns its handle; drops expired ones, and the
    /// oldest when full.
    pub(super) fn put(&self, schema: SchemaRef, batches: Vec<RecordBatch>) -> String {
        let handle = uuid::Uuid::new_v4().simple().to_string();
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (seq, map) = &mut *g;
        *seq += 1;
        map.retain(|_, p| p.at.elapsed() < RESULT_TTL);
        while map.len() >= KEEP_RESULTS {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, p)| p.seq)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            handle.clone(),
            Pending {
                schema,
                batches,
                seq: *seq,
                at: Instant::now(),
            },
        );
        handle
    }

    /// Takes a result out (a ticket is good for one `DoGet`).
    pub(super) fn take(&self, handle: &str) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1.remove(handle).map(|p| (p.schema, p.batches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Schema;

    #[test]
    fn results_are_taken_once_and_bounded() {
        let r = Results::default();
        let schema = Arc::new(Schema::empty());
        let first = r.put(schema.clone(), vec![]);
        assert!(r.take(&first).is_some());
        assert!(r.take(&first).is_none());
        let oldest = r.put(schema.clone(), vec![]);
        for _ in 0..KEEP_RESULTS {
            r.put(schema.clone(), vec![]);
        }
        assert!(r.take(&oldest).is_none());
        let len = r.inner.lock().map(|g| g.1.len()).unwrap_or(0);
        assert_eq!(len, KEEP_RESULTS);
    }
}
