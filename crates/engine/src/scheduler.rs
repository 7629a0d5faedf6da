//! In-memory run queue: FIFO per concurrency key, one active run per key, a global worker limit.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Identifies one queue: a function and a concurrency key value (or the run itself when the
/// function has no key).
pub(crate) type QueueKey = String;

pub(crate) fn queue_key(function_id: &str, concurrency_key: Option<&str>, run_id: &str) -> QueueKey {
    match concurrency_key {
        Some(key) => format!("{function_id}\u{0}{key}"),
        None => format!("{function_id}\u{0}\u{0}{run_id}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Queued {
    pub seq: i64,
    pub run_id: String,
}

pub(crate) struct Scheduler {
    queues: HashMap<QueueKey, VecDeque<Queued>>,
    active: HashSet<QueueKey>,
    /// Queues whose head may start now, ordered by the head's sequence number so that the
    /// oldest waiting run goes first across keys.
    ready: BTreeMap<i64, QueueKey>,
    running: usize,
    limit: usize,
}

impl Scheduler {
    pub fn new(limit: usize) -> Self {
        Self {
            queues: HashMap::new(),
            active: HashSet::new(),
            ready: BTreeMap::new(),
            running: 0,
            limit: limit.max(1),
        }
    }

    pub fn enqueue(&mut self, key: QueueKey, run: Queued) {
        let queue = self.queues.entry(key.clone()).or_default();
        if queue.iter().any(|queued| queued.run_id == run.run_id) {
            return;
        }
        let was_empty = queue.is_empty();
        let seq = run.seq;
        queue.push_back(run);
        if was_empty && !self.active.contains(&key) {
            self.ready.insert(seq, key);
        }
    }

    /// The next run to start, if a worker is free and some key is idle.
    pub fn next(&mut self) -> Option<(QueueKey, Queued)> {
        if self.running >= self.limit {
            return None;
        }
        let (_, key) = self.ready.pop_first()?;
        let queue = self.queues.get_mut(&key)?;
        let run = queue.pop_front()?;
        self.active.insert(key.clone());
        self.running += 1;
        Some((key, run))
    }

    /// Called when a run of `key` ended: frees its worker and lets the key's next run go.
    pub fn finish(&mut self, key: &QueueKey) {
        if self.active.remove(key) {
            self.running -= 1;
        }
        match self.queues.get(key).and_then(VecDeque::front) {
            Some(head) => {
                self.ready.insert(head.seq, key.clone());
            }
            None => {
                self.queues.remove(key);
            }
        }
    }

    /// Removes a run that has not started; returns whether it was waiting.
    pub fn remove_waiting(&mut self, key: &QueueKey, run_id: &str) -> bool {
        let Some(queue) = self.queues.get_mut(key) else {
            return false;
        };
        let Some(index) = queue.iter().position(|queued| queued.run_id == run_id) else {
            return false;
        };
        let removed = queue.remove(index);
        if index == 0 && !self.active.contains(key) {
            if let Some(removed) = removed {
                self.ready.remove(&removed.seq);
            }
            if let Some(head) = queue.front() {
                self.ready.insert(head.seq, key.clone());
            }
        }
        if queue.is_empty() && !self.active.contains(key) {
            self.queues.remove(key);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(seq: i64) -> Queued {
        Queued {
            seq,
            run_id: format!("run-{seq}"),
        }
    }

    #[test]
    fn one_run_per_key_in_fifo_order() {
        let mut scheduler = Scheduler::new(10);
        scheduler.enqueue("a".into(), queued(1));
        scheduler.enqueue("a".into(), queued(2));
        let (key, first) = scheduler.next().expect("first run starts");
        assert_eq!(first.seq, 1);
        assert!(scheduler.next().is_none(), "second run of the key must wait");
        scheduler.finish(&key);
        assert_eq!(scheduler.next().map(|(_, run)| run.seq), Some(2));
    }

    #[test]
    fn different_keys_run_in_parallel_up_to_the_limit() {
        let mut scheduler = Scheduler::new(2);
        for (seq, key) in ["a", "b", "c"].into_iter().enumerate() {
            scheduler.enqueue(key.into(), queued(seq as i64));
        }
        let started: Vec<_> = std::iter::from_fn(|| scheduler.next()).collect();
        assert_eq!(started.len(), 2);
        scheduler.finish(&started[0].0);
        assert_eq!(scheduler.next().map(|(key, _)| key), Some("c".to_string()));
    }

    #[test]
    fn removing_a_waiting_head_promotes_the_next_run() {
        let mut scheduler = Scheduler::new(10);
        scheduler.enqueue("a".into(), queued(1));
        scheduler.enqueue("a".into(), queued(2));
        assert!(scheduler.remove_waiting(&"a".into(), "run-1"));
        assert_eq!(scheduler.next().map(|(_, run)| run.seq), Some(2));
        assert!(
            !scheduler.remove_waiting(&"a".into(), "run-2"),
            "a started run is not waiting"
        );
    }

    #[test]
    fn a_run_is_queued_once() {
        let mut scheduler = Scheduler::new(10);
        scheduler.enqueue("a".into(), queued(1));
        scheduler.enqueue("a".into(), queued(1));
        assert!(scheduler.next().is_some());
        scheduler.finish(&"a".into());
        assert!(scheduler.next().is_none());
    }
}
