//! The shape of the code, checked like behaviour: no source file grows past the size a reader
//! can hold (tests aside), and no crate's modules import each other in a circle. Both rules
//! are in issue #13; a change that breaks one fails here, with the file or the circle named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lines a source file may have outside its `#[cfg(test)] mod tests { … }`.
const MAX_LINES: usize = 600;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crates' `src` directories.
fn crate_sources() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The file without its test module (a `#[cfg(test)]` followed by `mod NAME {` at the start of
/// a line, up to the `}` that closes it at the start of a line) and without comment lines.
fn code_lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "#[cfg(test)]" && lines.peek().is_some_and(|next| next.starts_with("mod ") && next.ends_with('{')) {
            for inner in lines.by_ref() {
                if inner == "}" {
                    break;
                }
            }
            continue;
        }
        out.push(line);
    }
    out
}

#[test]
fn no_source_file_is_longer_than_a_reader_can_hold() {
    let mut too_long = Vec::new();
    for src in crate_sources() {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for f in files {
            let n = code_lines(&std::fs::read_to_string(&f).unwrap()).len();
            if n > MAX_LINES {
                too_long.push(format!(
                    "{} has {n} lines outside its tests",
                    f.strip_prefix(workspace()).unwrap_or(&f).display()
                ));
            }
        }
    }
    assert!(too_long.is_empty(), "over {MAX_LINES} lines:\n{}", too_long.join("\n"));
}

/// A crate's modules (`a`, `services::mfa`) and, for each, the modules it names by path
/// (`crate::a::…`, `super::sibling`). A parent declaring its children and a child using its
/// parent are not imports.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut modules = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] || parts.is_empty() {
            continue;
        }
        modules.insert(parts.join("::"), f);
    }
    let mut graph = BTreeMap::new();
    for (name, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let code: Vec<&str> = code_lines(&text)
            .into_iter()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        let code = code.join("\n");
        let parent = name.rsplit_once("::").map(|(p, _)| p.to_owned());
        let mut refs = BTreeSet::new();
        for (prefix, base) in [("crate::", None), ("super::", parent.as_deref())] {
            for (i, _) in code.match_indices(prefix) {
                let before = code[..i].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let path: Vec<&str> = code[i + prefix.len()..]
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .take(2)
                    .collect();
                let full = |n: usize| {
                    let tail = path[..n].join("::");
                    match base {
                        Some(b) if !b.is_empty() => format!("{b}::{tail}"),
                        _ => tail,
                    }
                };
                let target = if path.len() == 2 && modules.contains_key(&full(2)) {
                    full(2)
                } else {
                    full(1)
                };
                if modules.contains_key(&target) && &target != name && !target.starts_with(&format!("{name}::")) {
                    refs.insert(target);
                }
            }
        }
        graph.insert(name.clone(), refs);
    }
    graph
}

/// A circle in `graph`, if there is one, as the modules along it.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

#[test]
fn no_crate_has_modules_that_import_each_other_in_a_circle() {
    let mut circles = Vec::new();
    for src in crate_sources() {
        let graph = module_graph(&src);
        if let Some(c) = find_circle(&graph) {
            circles.push(format!("{}: {}", src.display(), c.join(" -> ")));
        }
    }
    assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
}

#[test]
fn the_circle_check_sees_a_circle() {
    // The check itself, on a made-up graph: a -> b -> c -> a is found, a tree is not.
    let edges = |pairs: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            g.entry((*a).to_owned()).or_default().insert((*b).to_owned());
            g.entry((*b).to_owned()).or_default();
        }
        g
    };
    let circle = find_circle(&edges(&[("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")])).unwrap();
    assert_eq!(circle.first(), circle.last());
    assert_eq!(circle.len(), 4, "{circle:?}");
    assert_eq!(find_circle(&edges(&[("a", "b"), ("a", "c"), ("b", "c")])), None);
    // And the server's graph is read at all: its routes use its services.
    let server = module_graph(&workspace().join("crates/jitgate-server/src"));
    assert!(server["routes"].contains("services::requests"), "{:?}", server["routes"]);
    assert!(server["services::enrolment"].contains("services::mfa"));
}
