//! The shape of the code, checked as the code changes: the modules of `src/` import each other
//! without a circle, no function of the poller grows past what one can follow, and
//! docs/design.md quotes the poller's constants as they are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// A module's name (`poll::read`) for each source file, without the crate root and the files
/// that only hold unit tests.
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(Path::new(SRC), &mut files);
    let mut mods = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(SRC).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|l| l == "mod") {
            parts.pop();
        }
        if matches!(parts.as_slice(), [one] if one == "lib" || one == "main")
            || parts.last().is_some_and(|l| l == "tests")
        {
            continue;
        }
        mods.insert(parts.join("::"), f);
    }
    mods
}

/// The code of a file without comments, string contents and its test-only modules (from the
/// first `#[cfg(test)]` module on, which is where they stand).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let test_module = text.match_indices("#[cfg(test)]\n").find(|(i, m)| {
        let next = text[i + m.len()..].trim_start();
        let next = next.strip_prefix("pub(super) ").unwrap_or(next);
        next.starts_with("mod ")
    });
    let text = match test_module {
        Some((i, _)) => &text[..i],
        None => &text,
    };
    let mut out = String::new();
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut kept = String::new();
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if !in_str && c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' && prev != '\'' {
                in_str = !in_str;
                kept.push(c);
            } else if !in_str {
                kept.push(c);
            }
            prev = if prev == '\\' && c == '\\' { ' ' } else { c };
            i += 1;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

fn ident_path(s: &str) -> Vec<String> {
    let mut segs = Vec::new();
    let mut rest = s;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segs.push(rest[..end].to_string());
        match rest[end..].strip_prefix("::") {
            Some(r) if !r.starts_with('{') => rest = r,
            _ => break,
        }
    }
    segs
}

/// The paths a `use` tree names after `prefix::`, groups expanded: `{a::b, c::{d, e}}`.
fn use_paths(after: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let after = after.trim_start();
    if let Some(group) = after.strip_prefix('{') {
        let (mut depth, mut start) = (0, 0);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    use_paths_item(&group[start..i], &prefix, out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    use_paths_item(&group[start..i], &prefix, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
    } else {
        let segs = ident_path(after);
        let mut p = prefix;
        p.extend(segs.iter().cloned());
        let tail = &after[segs
            .iter()
            .map(|s| s.len() + 2)
            .sum::<usize>()
            .min(after.len())..];
        if after.contains("::{") && tail.starts_with('{') {
            use_paths(tail, p, out);
        } else {
            out.push(p);
        }
    }
}

fn use_paths_item(item: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let item = item.trim();
    if item.is_empty() || item == "self" || item == "*" {
        out.push(prefix.to_vec());
    } else {
        use_paths(item, prefix.to_vec(), out);
    }
}

/// The longest prefix of `segs` that names a module.
fn resolve(segs: &[String], mods: &BTreeMap<String, PathBuf>) -> Option<String> {
    (1..=segs.len())
        .rev()
        .map(|k| segs[..k].join("::"))
        .find(|m| mods.contains_key(m))
}

/// Who imports whom: `crate::` and `super::` paths, and a parent module's `use child::`.
fn graph(mods: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let mut g = BTreeMap::new();
    for (name, path) in mods {
        let src = code(path);
        let is_dir = path.ends_with("mod.rs");
        let parent: Vec<String> = name.split("::").map(str::to_string).collect();
        // `super` is the module's parent, whether the module is a file or a directory.
        let sup: Vec<String> = parent[..parent.len() - 1].to_vec();
        let mut paths = Vec::new();
        for (anchor, base) in [("crate::", Vec::new()), ("super::", sup)] {
            for (i, _) in src.match_indices(anchor) {
                let before = src[..i].chars().last().unwrap_or(' ');
                if before.is_alphanumeric()
                    || before == '_'
                    || (anchor == "super::" && before == ':')
                {
                    continue;
                }
                use_paths(&src[i + anchor.len()..], base.clone(), &mut paths);
            }
        }
        if is_dir {
            for line in src.lines() {
                let l = line.trim_start().trim_start_matches("pub ");
                if let Some(rest) = l.strip_prefix("use ") {
                    let segs = ident_path(rest);
                    if let Some(first) = segs.first() {
                        if first != "crate" && first != "super" && first != "std" {
                            let mut p = parent.clone();
                            p.push(first.clone());
                            paths.push(p);
                        }
                    }
                }
            }
        }
        let deps: BTreeSet<String> = paths
            .iter()
            .filter_map(|p| resolve(p, mods))
            .filter(|d| d != name)
            .collect();
        g.insert(name.clone(), deps);
    }
    g
}

/// The strongly connected components of more than one module (Tarjan).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_modules_import_each_other_without_a_circle() {
    let mods = modules();
    let g = graph(&mods);
    // The check sees real imports: these are known edges of the layering.
    for (from, to) in [
        ("poll::read", "poll::ledger"),
        ("poll::windows", "poll::channels"),
        ("live", "ucm"),
        ("cdr::classify", "cdr::groups"),
        ("cdr::groups", "cdr::labels"),
        ("state", "clock"),
    ] {
        assert!(
            g[from].contains(to),
            "{from} should import {to}: {:?}",
            g[from]
        );
    }
    let found = circles(&g);
    assert!(
        found.is_empty(),
        "modules that import each other in a circle: {found:?}\nthe graph: {g:#?}"
    );
}

#[test]
fn the_circle_check_finds_a_circle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let edge = |g: &mut BTreeMap<String, BTreeSet<String>>, a: &str, b: &str| {
        g.entry(a.into()).or_default().insert(b.into());
    };
    edge(&mut g, "a", "b");
    edge(&mut g, "b", "c");
    edge(&mut g, "c", "a");
    edge(&mut g, "c", "d");
    assert_eq!(circles(&g), vec![vec!["a", "b", "c"]]);
    let mut paths = Vec::new();
    use_paths("{a::{b, c}, d::E, self}", vec!["x".into()], &mut paths);
    assert_eq!(
        paths,
        vec![
            vec!["x", "a", "b"],
            vec!["x", "a", "c"],
            vec!["x", "d", "E"],
            vec!["x"]
        ]
    );
}

/// Each function of a file: its name and its length in lines, signature to closing brace.
fn functions(path: &Path) -> Vec<(String, usize, usize)> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let t = t.strip_prefix("pub(crate) ").unwrap_or(t);
        let t = t.strip_prefix("pub(super) ").unwrap_or(t);
        let t = t.strip_prefix("pub ").unwrap_or(t);
        let t = t.strip_prefix("const ").unwrap_or(t);
        let t = t.strip_prefix("async ").unwrap_or(t);
        let Some(rest) = t.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut opened) = (0i32, false);
        for (j, l) in lines.iter().enumerate().skip(i) {
            let code = code_of_line(l);
            if !opened && code.trim_end().ends_with(';') {
                break;
            }
            for c in code.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if opened && depth == 0 {
                out.push((name.clone(), i + 1, j - i + 1));
                break;
            }
        }
    }
    out
}

/// A line without its comment and the contents of its strings and char literals.
fn code_of_line(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_str => {
                chars.next();
            }
            '"' => in_str = !in_str,
            '/' if !in_str && chars.peek() == Some(&'/') => break,
            '\'' if !in_str => {
                // A char literal such as '{' (a lifetime has no closing quote nearby).
                let ahead: Vec<char> = chars.clone().take(3).collect();
                match ahead.as_slice() {
                    ['\\', _, '\''] => {
                        chars.nth(2);
                    }
                    [_, '\'', ..] => {
                        chars.nth(1);
                    }
                    _ => out.push(c),
                }
            }
            _ if !in_str => out.push(c),
            _ => {}
        }
    }
    out
}

/// Longer than this and a function of the poller no longer fits in one's head.
const MAX_POLL_FN_LINES: usize = 80;

#[test]
fn no_function_of_the_poller_is_80_lines_or_longer() {
    let dir = Path::new(SRC).join("poll");
    let mut all = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        for (name, line, len) in functions(&p) {
            all.push((len, format!("{}:{line} {name}", p.display())));
        }
    }
    all.sort();
    assert!(all.len() > 50, "functions found: {}", all.len());
    let (longest, at) = all.last().unwrap();
    assert!(
        *longest < MAX_POLL_FN_LINES,
        "{at} is {longest} lines long; split it"
    );
    // The measure sees a whole function, not the first block of one.
    let f = functions(&dir.join("plan.rs"));
    let plan = f.iter().find(|(n, _, _)| n == "plan").unwrap();
    assert!(plan.2 > 30, "{plan:?}");
}

#[test]
fn design_quotes_the_constants_as_they_are() {
    use ucm_exporter::poll::*;
    let design =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/design.md")).unwrap();
    let secs = |s: i64| match s {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    };
    let quoted = [
        ("MAX_PAGES_PER_READ", MAX_PAGES_PER_READ.to_string()),
        ("COMMIT_EVERY_PAGES", COMMIT_EVERY_PAGES.to_string()),
        (
            "PAGE_SIZE",
            ucm_exporter::ucm::cdrapi::PAGE_SIZE.to_string(),
        ),
        ("MERGE_GAP", secs(MERGE_GAP)),
        ("MAX_TARGETED_READS", MAX_TARGETED_READS.to_string()),
        ("READS_PER_ENDED_CALL", READS_PER_ENDED_CALL.to_string()),
        ("WATERMARK_SLACK", secs(WATERMARK_SLACK)),
        ("BASELINE_SLACK", secs(BASELINE_SLACK)),
        ("PROBE_INTERVAL", secs(PROBE_INTERVAL.as_secs() as i64)),
        ("MAX_UNANSWERED", MAX_UNANSWERED.to_string()),
        ("SPANS_KEPT", SPANS_KEPT.to_string()),
        ("PROBE_MIN_SPAN", secs(PROBE_MIN_SPAN)),
        ("PROBE_HALF_WINDOW", secs(PROBE_HALF_WINDOW)),
        ("POLL_MARGIN", POLL_MARGIN.to_string()),
        ("READ_MARGIN", READ_MARGIN.to_string()),
        ("BASELINE_REQUESTS", BASELINE_REQUESTS.to_string()),
    ];
    let missing: Vec<String> = quoted
        .iter()
        .map(|(name, value)| format!("`{name}` ({value})"))
        .filter(|q| !design.contains(q.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/design.md does not quote these as the code has them: {missing:?}"
    );
}
