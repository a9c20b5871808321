//! A config file: `config::parse_file` (YAML into the file's shape) and `config::resolve` (into
//! validated `Settings`, as the exporter and `ucm-exporter check` do). Settings that resolve
//! must be ones `Target::validate` accepts.
//!
//! `password_file` and `tls.ca_file` would make `resolve` read or stat any path the input names
//! (`/dev/zero` would hang it): both are pointed at one small file this target writes.

#![no_main]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ucm_exporter::config::{parse_file, resolve, FlagOverrides};

fn password_file() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ucm-exporter-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("password");
        std::fs::write(&p, "fuzz-password\n").unwrap();
        p
    })
}

fn env(k: &str) -> Option<String> {
    match k {
        "OFFICE_PW" => Some("pw-from-env".into()),
        "EMPTY_PW" => Some(String::new()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = Path::new("fuzz.yml");
    let Ok(mut file) = parse_file(text, source) else {
        return;
    };
    for t in &mut file.targets {
        if t.password_file.is_some() {
            t.password_file = Some(password_file().to_path_buf());
        }
        if t.tls.ca_file.is_some() {
            t.tls.ca_file = Some(password_file().to_path_buf());
        }
    }
    let Ok(settings) = resolve(Some((&file, source)), None, &FlagOverrides::default(), &env) else {
        return;
    };
    assert!(settings.extension_max >= 1);
    assert_eq!(settings.targets.len(), file.targets.len());
    let mut names = HashSet::new();
    for t in &settings.targets {
        t.validate().expect("a resolved target is valid");
        assert!(names.insert(t.name.as_str()), "target names are unique");
        assert!(t.api_url().ends_with("/api"));
        let _ = settings.extension_pattern.is_local(&t.name);
    }
});
