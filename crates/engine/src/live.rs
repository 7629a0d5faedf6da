//! Step attempts in flight, kept in memory: they are journaled only when they end.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::types::{StepInfo, StepStatus};

#[derive(Default)]
pub(crate) struct LiveSteps {
    by_run: Mutex<HashMap<String, HashMap<String, StepInfo>>>,
}

impl LiveSteps {
    pub fn started(&self, run_id: &str, step_id: &str, name: &str, attempts: u32, started_at: i64) {
        let mut by_run = self.by_run.lock().unwrap_or_else(PoisonError::into_inner);
        by_run.entry(run_id.to_owned()).or_default().insert(
            step_id.to_owned(),
            StepInfo {
                id: step_id.to_owned(),
                name: name.to_owned(),
                status: StepStatus::Running,
                attempts,
                error: None,
                started_at,
                ended_at: None,
            },
        );
    }

    pub fn ended(&self, run_id: &str, step_id: &str) {
        let mut by_run = self.by_run.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(steps) = by_run.get_mut(run_id) {
            steps.remove(step_id);
            if steps.is_empty() {
                by_run.remove(run_id);
            }
        }
    }

    /// Lays the run's attempts in flight over its journaled steps.
    pub fn merge(&self, run_id: &str, steps: &mut Vec<StepInfo>) {
        let by_run = self.by_run.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(live) = by_run.get(run_id) else { return };
        for step in live.values() {
            match steps.iter_mut().find(|journaled| journaled.id == step.id) {
                Some(journaled) => {
                    journaled.status = StepStatus::Running;
                    journaled.attempts = step.attempts;
                }
                None => steps.push(step.clone()),
            }
        }
    }
}
