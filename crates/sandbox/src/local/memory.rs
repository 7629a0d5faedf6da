//! The memory budget of live sandboxes: which idle sandboxes to unload so that the loaded ones
//! (and one about to start) fit in it.
//!
//! A sandbox counts with its anonymous memory (plus tmpfs pages, which cannot be reclaimed
//! either), read from its cgroup; page cache is left out since the kernel reclaims it. A
//! sandbox that started less than [`WARM_UP`] ago counts as at least its template's estimate,
//! because its dev server has not grown to its working size yet.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Inner, Phase, Slot, lock};
use crate::error::{Error, Result};

/// How long a freshly loaded sandbox is counted as at least its template's estimate.
pub const WARM_UP: Duration = Duration::from_secs(60);

/// How long a sandbox's memory reading is reused. Well below [`WARM_UP`]: a sandbox that
/// starts growing counts as its estimate until then.
const SAMPLE_TTL: Duration = Duration::from_secs(1);

/// Half of the machine's RAM: the default budget.
pub fn half_of_machine_memory() -> u64 {
    let info = rustix::system::sysinfo();
    (info.totalram as u64).saturating_mul(info.mem_unit as u64) / 2
}

/// One loaded sandbox as the budget sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub id: String,
    /// Bytes it counts for (see the module doc).
    pub bytes: u64,
    /// No command, file operation or proxied connection in flight and no lifecycle change.
    pub idle: bool,
    pub last_used: Instant,
}

impl Usage {
    /// What a sandbox with `anon` bytes in use, loaded at `loaded_at`, counts for.
    pub fn counted(anon: u64, estimate: u64, loaded_at: Instant) -> u64 {
        if loaded_at.elapsed() < WARM_UP {
            anon.max(estimate)
        } else {
            anon
        }
    }
}

/// The verdict on fitting `needed` more bytes next to `loaded` within `budget`.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Unload these (least recently used first); then it fits.
    Unload(Vec<String>),
    /// Even unloading every idle sandbox leaves too little; `busy` sandboxes hold the rest.
    Full { busy: usize },
}

/// Chooses the least recently used idle sandboxes to unload so that `needed` more bytes fit.
pub fn plan(budget: u64, needed: u64, loaded: &[Usage]) -> Plan {
    let mut used: u64 = loaded.iter().map(|u| u.bytes).sum();
    let mut idle: Vec<&Usage> = loaded.iter().filter(|u| u.idle).collect();
    idle.sort_by_key(|u| u.last_used);
    let mut unload = Vec::new();
    for u in idle {
        if used.saturating_add(needed) <= budget {
            break;
        }
        used -= u.bytes;
        unload.push(u.id.clone());
    }
    if used.saturating_add(needed) <= budget {
        Plan::Unload(unload)
    } else {
        Plan::Full {
            busy: loaded.iter().filter(|u| !u.idle).count(),
        }
    }
}

impl Inner {
    /// Makes room for a sandbox about to load that is expected to use `estimate` bytes:
    /// unloads least recently used idle sandboxes as needed, and waits (up to the configured
    /// time) while busy ones hold the budget. Returns the bytes reserved, to hand back with
    /// [`Inner::unreserve`] once the sandbox is loaded.
    pub(super) async fn admit(&self, estimate: u64) -> Result<u64> {
        let Some(budget) = self.cfg.memory_budget_bytes else {
            return Ok(0);
        };
        let deadline = Instant::now() + self.cfg.memory_wait;
        loop {
            {
                let _turn = self.admission.lock().await;
                let reserved = self.reserved.load(Ordering::Relaxed);
                match plan(budget, estimate.saturating_add(reserved), &self.usages()) {
                    Plan::Unload(ids) => {
                        let mut all = true;
                        for id in ids {
                            all &= self.unload_if_idle(&id, "to make room in the memory budget").await;
                        }
                        if all {
                            self.reserved.fetch_add(estimate, Ordering::Relaxed);
                            return Ok(estimate);
                        }
                    }
                    Plan::Full { busy } if Instant::now() >= deadline => {
                        return Err(Error::MemoryBudget {
                            budget,
                            needed: estimate,
                            busy,
                        });
                    }
                    Plan::Full { .. } => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub(super) fn unreserve(&self, bytes: u64) {
        self.reserved.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Unloads idle sandboxes that were not used for the idle-unload time, then, if the loaded
    /// sandboxes have grown past the budget, the least recently used idle ones.
    pub(super) async fn enforce_budget(&self) {
        let slots: Vec<Arc<Slot>> = lock(&self.slots).values().cloned().collect();
        for slot in slots {
            let stale = {
                let a = lock(&slot.activity);
                a.active == 0 && a.last.elapsed() > self.cfg.idle_unload
            };
            if stale {
                self.unload_if_idle(&slot.id, "idle for the idle-unload time").await;
            }
        }
        let Some(budget) = self.cfg.memory_budget_bytes else {
            return;
        };
        let reserved = self.reserved.load(Ordering::Relaxed);
        if let Plan::Unload(ids) = plan(budget, reserved, &self.usages()) {
            for id in ids {
                self.unload_if_idle(&id, "the loaded sandboxes outgrew the memory budget")
                    .await;
            }
        }
    }

    /// What every loaded sandbox counts for. A sandbox whose lifecycle lock is taken is in the
    /// middle of a change and counts as busy.
    fn usages(&self) -> Vec<Usage> {
        let slots: Vec<Arc<Slot>> = lock(&self.slots).values().cloned().collect();
        let mut usages = Vec::new();
        // Reading a cgroup's memory.stat costs tens of microseconds; with hundreds of
        // sandboxes starting at once, every admission reading every sandbox's was quadratic.
        let unreclaimable = |slot: &Slot| -> u64 {
            let mut sample = lock(&slot.memory_sample);
            match *sample {
                Some((at, bytes)) if at.elapsed() < SAMPLE_TTL => bytes,
                _ => {
                    let bytes = super::Cgroup::new(self.cgroups.clone(), &slot.id).unreclaimable_bytes();
                    *sample = Some((Instant::now(), bytes));
                    bytes
                }
            }
        };
        for slot in slots {
            let (active, last_used) = {
                let a = lock(&slot.activity);
                (a.active, a.last)
            };
            let (bytes, idle) = match slot.life.try_lock() {
                Ok(life) => match (&life.phase, &life.live) {
                    (Phase::Running | Phase::Paused, Some(live)) => (
                        Usage::counted(unreclaimable(&slot), live.memory_estimate, live.loaded_at),
                        active == 0,
                    ),
                    _ => continue,
                },
                Err(_) => (unreclaimable(&slot), false),
            };
            usages.push(Usage {
                id: slot.id.clone(),
                bytes,
                idle,
                last_used,
            });
        }
        usages
    }

    /// Unloads the sandbox if it is loaded and nothing uses it; true when it is not loaded
    /// afterwards.
    async fn unload_if_idle(&self, id: &str, why: &str) -> bool {
        let Some(slot) = lock(&self.slots).get(id).cloned() else {
            return true;
        };
        let Ok(mut life) = slot.life.try_lock() else {
            return false;
        };
        if !matches!(life.phase, Phase::Running | Phase::Paused) {
            return true;
        }
        if lock(&slot.activity).active > 0 {
            return false;
        }
        tracing::info!(%id, reason = why, "unloading sandbox");
        match self.unload_locked(&slot, &mut life).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%id, error = %e, "sandbox did not unload cleanly");
                life.phase == Phase::Unloaded
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(id: &str, mib: u64, idle: bool, age_secs: u64) -> Usage {
        Usage {
            id: id.into(),
            bytes: mib << 20,
            idle,
            last_used: Instant::now() - Duration::from_secs(age_secs),
        }
    }

    #[test]
    fn unloads_least_recently_used_idle_sandboxes_until_it_fits() {
        let loaded = [
            usage("recent", 400, true, 10),
            usage("oldest", 400, true, 300),
            usage("busy", 400, false, 1000),
            usage("older", 400, true, 200),
        ];
        assert_eq!(
            plan(1600 << 20, 400 << 20, &loaded),
            Plan::Unload(vec!["oldest".into()])
        );
        assert_eq!(
            plan(1300 << 20, 400 << 20, &loaded),
            Plan::Unload(vec!["oldest".into(), "older".into()])
        );
        assert_eq!(plan(4000 << 20, 400 << 20, &loaded), Plan::Unload(vec![]));
    }

    #[test]
    fn busy_sandboxes_are_never_unloaded() {
        let loaded = [
            usage("a", 500, false, 100),
            usage("b", 500, false, 50),
            usage("c", 100, true, 9),
        ];
        assert_eq!(plan(1000 << 20, 400 << 20, &loaded), Plan::Full { busy: 2 });
        // A budget smaller than one sandbox cannot be met even with nothing loaded.
        assert_eq!(plan(100 << 20, 400 << 20, &[]), Plan::Full { busy: 0 });
    }

    #[test]
    fn a_warming_sandbox_counts_as_its_estimate() {
        let now = Instant::now();
        assert_eq!(Usage::counted(10, 500, now), 500);
        assert_eq!(Usage::counted(700, 500, now), 700);
        assert_eq!(Usage::counted(10, 500, now - WARM_UP - Duration::from_secs(1)), 10);
    }

    #[test]
    fn machine_memory_is_known() {
        let half = half_of_machine_memory();
        assert!(half > 64 << 20 && half < u64::MAX, "{half}");
    }
}
