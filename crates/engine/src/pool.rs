//! Pre-started sandboxes: a few of each template kept ready, so that a cold start
//! only mounts code and starts a program instead of creating a container.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::{Isolation, Sandbox, SandboxError, Template};

pub struct Pool {
    isolation: Isolation,
    /// Sandboxes kept ready per template.
    size: usize,
    ready: Mutex<Ready>,
}

#[derive(Default)]
struct Ready {
    sandboxes: HashMap<Template, Vec<Sandbox>>,
    /// Templates being refilled right now, so one filler runs per template.
    filling: HashSet<Template>,
    closed: bool,
}

impl Pool {
    pub fn new(isolation: Isolation, size: usize) -> Arc<Self> {
        Arc::new(Self {
            size: if isolation.pools() { size } else { 0 },
            isolation,
            ready: Mutex::new(Ready::default()),
        })
    }

    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// A sandbox for `template`: a ready one when there is one, else a new one.
    /// Either way the pool is topped up in the background.
    pub async fn take(self: &Arc<Self>, template: &Template) -> Result<Sandbox, SandboxError> {
        let ready = {
            let mut ready = self.ready.lock().expect("sandbox pool");
            let mut found = None;
            if let Some(sandboxes) = ready.sandboxes.get_mut(template) {
                while let Some(mut sandbox) = sandboxes.pop() {
                    if sandbox.is_alive() {
                        found = Some(sandbox);
                        break;
                    }
                }
            }
            found
        };
        self.fill(template.clone());
        match ready {
            Some(sandbox) => Ok(sandbox),
            None => self.isolation.create(template).await,
        }
    }

    /// Keeps `size` sandboxes of `template` ready from now on.
    pub fn fill(self: &Arc<Self>, template: Template) {
        if self.size == 0 {
            return;
        }
        {
            let mut ready = self.ready.lock().expect("sandbox pool");
            if ready.closed || !ready.filling.insert(template.clone()) {
                return;
            }
        }
        let pool = self.clone();
        tokio::spawn(async move {
            loop {
                let (count, closed) = {
                    let ready = pool.ready.lock().expect("sandbox pool");
                    let count = ready.sandboxes.get(&template).map_or(0, Vec::len);
                    (count, ready.closed)
                };
                if closed || count >= pool.size {
                    break;
                }
                match pool.isolation.create(&template).await {
                    Ok(sandbox) => {
                        let mut ready = pool.ready.lock().expect("sandbox pool");
                        if ready.closed {
                            break;
                        }
                        ready
                            .sandboxes
                            .entry(template.clone())
                            .or_default()
                            .push(sandbox);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "pre-starting a sandbox failed");
                        break;
                    }
                }
            }
            pool.ready
                .lock()
                .expect("sandbox pool")
                .filling
                .remove(&template);
        });
    }

    /// Kills every ready sandbox and stops refilling.
    pub fn close(&self) {
        let drained = {
            let mut ready = self.ready.lock().expect("sandbox pool");
            ready.closed = true;
            std::mem::take(&mut ready.sandboxes)
        };
        drop(drained);
    }
}
