//! Turns of the previews: a few run at once, the others wait, and how many
//! do each is known (the metrics show it).

use std::sync::Mutex;

use tokio::sync::{AcquireError, Semaphore, SemaphorePermit};

/// Previews holding a turn and previews waiting for one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TurnLoad {
    pub running: usize,
    pub waiting: usize,
}

/// At most `at_once` turns held; the others wait in the order they came.
pub struct Turns {
    permits: Semaphore,
    load: Mutex<TurnLoad>,
}

/// A turn held: given back when dropped.
pub struct Turn<'a> {
    _permit: SemaphorePermit<'a>,
    turns: &'a Turns,
}

/// A wait for a turn, counted until it ends, got or given up.
struct Wait<'a> {
    turns: &'a Turns,
}

impl Turns {
    pub fn new(at_once: usize) -> Turns {
        Turns {
            permits: Semaphore::new(at_once),
            load: Mutex::new(TurnLoad::default()),
        }
    }

    /// Previews running and waiting now.
    pub fn load(&self) -> TurnLoad {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TurnLoad> {
        self.load.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A turn, at once when one is free, else after the previews before it.
    /// Dropping the future gives up the wait.
    pub async fn take(&self) -> Result<Turn<'_>, AcquireError> {
        let permit = match self.permits.try_acquire() {
            Ok(permit) => {
                self.lock().running += 1;
                permit
            }
            Err(_) => {
                self.lock().waiting += 1;
                let wait = Wait { turns: self };
                let permit = self.permits.acquire().await?;
                std::mem::forget(wait);
                let mut load = self.lock();
                load.waiting -= 1;
                load.running += 1;
                permit
            }
        };
        Ok(Turn {
            _permit: permit,
            turns: self,
        })
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        self.turns.lock().waiting -= 1;
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.turns.lock().running -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_beyond_the_limit_wait_and_are_counted() {
        let turns = Turns::new(2);
        let first = turns.take().await.unwrap();
        let _second = turns.take().await.unwrap();
        let third = turns.take();
        tokio::pin!(third);
        assert!(futures::poll!(third.as_mut()).is_pending());
        assert_eq!(
            turns.load(),
            TurnLoad {
                running: 2,
                waiting: 1
            }
        );
        drop(first);
        let third = third.await.unwrap();
        assert_eq!(
            turns.load(),
            TurnLoad {
                running: 2,
                waiting: 0
            }
        );
        drop(third);
        // A wait given up is no longer counted.
        let _fourth = turns.take().await.unwrap();
        {
            let fifth = turns.take();
            tokio::pin!(fifth);
            assert!(futures::poll!(fifth.as_mut()).is_pending());
            assert_eq!(turns.load().waiting, 1);
        }
        assert_eq!(
            turns.load(),
            TurnLoad {
                running: 2,
                waiting: 0
            }
        );
    }
}
