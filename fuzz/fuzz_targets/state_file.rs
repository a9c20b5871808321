//! A state file's bytes: `state::load` (through a real file, as at start-up) and the decoder
//! inside it (`serde_json` into `PollState`), which must agree on a file of the current version;
//! a state that loads must survive an encode/decode round trip and `horizon`/`prune` must keep
//! only keys at or after the horizon.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ucm_exporter::clock::{from_local_secs, local_secs};
use ucm_exporter::state::{load, Loaded, PollState, VERSION};

/// A file of this process, rewritten for every input; in memory when /dev/shm exists.
fn state_path() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("ucm-exporter-fuzz-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("target.json")
    })
}

fuzz_target!(|data: &[u8]| {
    let decoded = serde_json::from_slice::<PollState>(data);
    let path = state_path();
    std::fs::write(path, data).unwrap();
    match load(path) {
        Loaded::Found(s) => {
            assert_eq!(s.version, VERSION);
            if let Ok(d) = decoded.as_ref().filter(|d| d.version == VERSION) {
                assert_eq!(&s, d);
            }
        }
        Loaded::Unusable(why) => {
            assert!(decoded.as_ref().is_err() || decoded.as_ref().unwrap().version != VERSION);
            assert!(!why.is_empty());
        }
        Loaded::Newer(why) => assert!(why.contains("later")),
        Loaded::Missing => panic!("the file was just written"),
    }
    let Ok(mut state) = decoded else {
        return;
    };

    let bytes = serde_json::to_vec(&state).expect("state encodes");
    let back: PollState = serde_json::from_slice(&bytes).expect("an encoded state decodes");
    assert_eq!(back, state);

    if let Some(w) = state.watermark {
        let _ = local_secs(from_local_secs(w));
    }
    for reach in [0, 600, 4 * 3600, i64::MAX, i64::MIN] {
        let h = state.horizon(reach);
        assert!(h >= state.baseline_start);
    }
    let horizon = state.horizon(3600);
    let before = state.pruned_below;
    state.prune(horizon);
    if before.is_none_or(|p| p < horizon) {
        assert_eq!(state.pruned_below, Some(horizon));
        assert!(state.calls.values().all(|s| *s >= horizon));
        assert!(state.legs.values().all(|s| *s >= horizon));
    }
    // Pruning again at the same horizon changes nothing.
    let pruned = state.clone();
    state.prune(horizon);
    assert_eq!(state, pruned);
});
