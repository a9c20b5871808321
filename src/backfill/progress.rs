//! The progress of a backfill, in `OUTPUT.progress` next to its output: the first day not yet
//! written, the output's length after the last day written, and the values the series had
//! then. The output is synced before the progress names its new length, so a run stopped at
//! any point (Ctrl-C, a UCM that went away, a crash) resumes by cutting the output back to that
//! length and reading that day again: nothing is counted twice, nothing is lost.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::series::Totals;
use crate::clock::LocalSecs;
use crate::state::Paging;

const VERSION: u32 = 1;

/// What a backfill was asked for: its progress is only taken up by the same run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub target: String,
    pub url: String,
    pub from: String,
    pub to: String,
    pub step_secs: u64,
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    version: u32,
    run: Run,
    next: LocalSecs,
    output_len: u64,
    paging: Paging,
    done: bool,
    totals: Totals,
}

pub struct Progress {
    path: PathBuf,
    output: PathBuf,
    run: Run,
    /// The first day not yet written.
    pub next: LocalSecs,
    output_len: u64,
    /// What the UCM has shown of its paging.
    pub paging: Paging,
    /// The series' values at the end of the last day written.
    pub totals: Totals,
}

impl Progress {
    /// The progress of `run` into `output`, its output cut back to what it covers; `None` when
    /// that run is complete.
    pub fn open(output: &Path, run: Run, from: LocalSecs) -> Result<Option<Progress>> {
        let mut name = output.as_os_str().to_owned();
        name.push(".progress");
        let path = PathBuf::from(name);
        let saved =
            match std::fs::read(&path) {
                Ok(bytes) => Some(serde_json::from_slice::<Saved>(&bytes).with_context(|| {
                    format!("{} is not a backfill progress file", path.display())
                })?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
        let Some(saved) = saved else {
            if std::fs::metadata(output).is_ok_and(|m| m.len() > 0) {
                bail!(
                    "{} exists and has no progress file: remove it or choose another --output",
                    output.display()
                );
            }
            File::create(output).with_context(|| format!("creating {}", output.display()))?;
            let p = Progress {
                path,
                output: output.to_path_buf(),
                run,
                next: from,
                output_len: 0,
                paging: Paging::default(),
                totals: Totals::new(),
            };
            p.save(false)?;
            return Ok(Some(p));
        };
        if saved.version != VERSION || saved.run != run {
            bail!(
                "{} belongs to another backfill ({} from {} to {}, step {} s, labels {:?}): run that one again to \
                 finish it, or remove {} and {}",
                path.display(),
                saved.run.target,
                saved.run.from,
                saved.run.to,
                saved.run.step_secs,
                saved.run.labels,
                path.display(),
                output.display()
            );
        }
        if saved.done {
            return Ok(None);
        }
        let len = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
        if len < saved.output_len {
            bail!(
                "{} holds {len} bytes, less than the {} its progress file has written: remove both and start again",
                output.display(),
                saved.output_len
            );
        }
        // The part of a day that was being written when the run stopped.
        OpenOptions::new()
            .write(true)
            .open(output)
            .and_then(|f| f.set_len(saved.output_len))
            .with_context(|| format!("cutting {} back", output.display()))?;
        Ok(Some(Progress {
            path,
            output: output.to_path_buf(),
            run,
            next: saved.next,
            output_len: saved.output_len,
            paging: saved.paging,
            totals: saved.totals,
        }))
    }

    /// The output, to append a day to.
    pub fn append(&self) -> Result<BufWriter<File>> {
        let f = OpenOptions::new()
            .append(true)
            .open(&self.output)
            .with_context(|| format!("opening {}", self.output.display()))?;
        Ok(BufWriter::with_capacity(1 << 20, f))
    }

    /// Records a day written to `out`: the output synced first, then the progress.
    pub fn commit(&mut self, out: BufWriter<File>, next: LocalSecs, totals: &Totals) -> Result<()> {
        self.output_len = self.sync(out)?;
        self.next = next;
        self.totals = totals.clone();
        self.save(false)
    }

    /// Ends the output as OpenMetrics requires and records the run as complete.
    pub fn finish(&mut self) -> Result<()> {
        let mut out = self.append()?;
        // OpenMetrics requires it at the end.
        out.write_all(b"# EOF\n").context("writing the output")?;
        self.output_len = self.sync(out)?;
        self.save(true)
    }

    fn sync(&self, out: BufWriter<File>) -> Result<u64> {
        let f = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", self.output.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", self.output.display()))?;
        Ok(f.metadata()?.len())
    }

    fn save(&self, done: bool) -> Result<()> {
        let saved = Saved {
            version: VERSION,
            run: self.run.clone(),
            next: self.next,
            output_len: self.output_len,
            paging: self.paging,
            done,
            totals: self.totals.clone(),
        };
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("writing next to {}", self.path.display()))?;
        serde_json::to_writer(&mut tmp, &saved)?;
        tmp.flush()?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path)
            .with_context(|| format!("saving {}", self.path.display()))?;
        Ok(())
    }
}
