//! The ranks of an MPI job as a [`Collective`] (rsmpi over the system's MPI, the `mpi`
//! feature). Every exchange is a non-blocking MPI collective polled until it completes; one
//! that has not completed after the timeout prints which exchange waited, on which rank, and
//! aborts the whole job (`MPI_Abort`): a rank that died or hangs stops the others with that
//! error instead of a hang, and the checkpoints already written stay as they are (each is
//! written to a temporary name and renamed).

use std::time::{Duration, Instant};

use mpi::datatype::PartitionMut;
use mpi::request::{scope, Request, Scope};
use mpi::topology::{Communicator, Rank, SimpleCommunicator};
use mpi::traits::*;

use super::Collective;
use crate::{Error, Result};

/// Exit code of a job aborted by a timed-out exchange.
pub const TIMEOUT_EXIT: i32 = 70;

/// This process as a rank of `MPI_COMM_WORLD`.
pub struct Mpi {
    _universe: mpi::environment::Universe,
    world: SimpleCommunicator,
    timeout: Duration,
}

impl Mpi {
    /// Initialise MPI (once per process); exchanges wait at most `timeout`.
    pub fn init(timeout: Duration) -> Result<Self> {
        let universe = mpi::initialize().ok_or_else(|| {
            Error::invalid("MPI is already initialised in this process: use one run per process")
        })?;
        let world = universe.world();
        Ok(Self {
            _universe: universe,
            world,
            timeout,
        })
    }

    /// The rank of this process among the processes of its host (see
    /// [`super::local_rank_from_env`]), else its rank.
    pub fn local_rank(&self) -> usize {
        super::local_rank_from_env().unwrap_or_else(|| self.rank())
    }

    fn wait<'a, D: ?Sized, S: Scope<'a>>(&self, mut req: Request<'a, D, S>, what: &str) {
        let start = Instant::now();
        let mut pause = Duration::from_micros(20);
        loop {
            match req.test() {
                Ok(_) => return,
                Err(r) => req = r,
            }
            if start.elapsed() > self.timeout {
                eprintln!(
                    "error: rank {} of {} waited {:.0} s for the other ranks in {what}: a rank died or hangs; ending the job (the last checkpoint is kept; raise dist.timeout_s if an outer step or an evaluation takes longer)",
                    self.rank(),
                    self.size(),
                    self.timeout.as_secs_f64()
                );
                self.world.abort(TIMEOUT_EXIT);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }
}

fn count(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| {
        Error::invalid(format!(
            "an exchange of {n} bytes is beyond MPI's 2 GiB count; use fewer instances per rank or a smaller model"
        ))
    })
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn gather(&self, bytes: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        let root = self.world.process_at_rank(0 as Rank);
        let n = bytes.len() as u64;
        // An empty slice's pointer is dangling (1 for bytes), which Open MPI reads as
        // MPI_IN_PLACE: every buffer handed to MPI points into real storage.
        let anchor = [0u8; 1];
        let bytes = if bytes.is_empty() {
            &anchor[..0]
        } else {
            bytes
        };
        if self.rank() != 0 {
            scope(|sc| self.wait(root.immediate_gather_into(sc, &n), "gathering sizes"));
            scope(|sc| {
                self.wait(
                    root.immediate_gather_varcount_into(sc, bytes),
                    "gathering the meta-gradients",
                )
            });
            return Ok(None);
        }
        let mut lens = vec![0u64; self.size()];
        scope(|sc| {
            self.wait(
                root.immediate_gather_into_root(sc, &n, &mut lens[..]),
                "gathering sizes",
            )
        });
        let counts: Vec<i32> = lens
            .iter()
            .map(|&l| count(l as usize))
            .collect::<Result<_>>()?;
        let mut displs = Vec::with_capacity(counts.len());
        let mut at = 0usize;
        for &c in &counts {
            displs.push(count(at)?);
            at += c as usize;
        }
        let mut buf = vec![0u8; at + 1];
        {
            let mut part = PartitionMut::new(&mut buf[..at], &counts[..], &displs[..]);
            scope(|sc| {
                self.wait(
                    root.immediate_gather_varcount_into_root(sc, bytes, &mut part),
                    "gathering the meta-gradients",
                )
            });
        }
        let mut out = Vec::with_capacity(counts.len());
        let mut at = 0usize;
        for &c in &counts {
            out.push(buf[at..at + c as usize].to_vec());
            at += c as usize;
        }
        Ok(Some(out))
    }

    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<()> {
        let root = self.world.process_at_rank(0 as Rank);
        let mut n = bytes.len() as u64;
        scope(|sc| {
            self.wait(
                root.immediate_broadcast_into(sc, &mut n),
                "broadcasting a size",
            )
        });
        count(n as usize)?;
        bytes.resize(n as usize, 0);
        if n == 0 {
            // Every rank knows the size: nothing to send (and no dangling pointer for MPI).
            return Ok(());
        }
        scope(|sc| {
            self.wait(
                root.immediate_broadcast_into(sc, &mut bytes[..]),
                "broadcasting the meta-parameters",
            )
        });
        Ok(())
    }
}
