//! The crate's files import each other without a cycle: the layers only
//! point down (`cargo test --release --test module_graph` shows it, and
//! prints every cycle it finds with the imports that close it).
//!
//! The graph is read from the source text: every `use` tree and every
//! inline `crate::…` / `super::…` path, resolved to the file of the longest
//! module prefix it names (`crate::config::rules::Rules` →
//! `src/config/rules.rs`; `crate::config::Config` → `src/config.rs`), and
//! through a `pub use` re-export to the file that defines the name (a
//! child's `super::Split` is an arrow to `data/rating.rs`, not to the
//! `data/mod.rs` that re-exports it). A `mod` declaration is not an
//! import; a re-export is an arrow from its module to the source.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`["grpo", "trainer"]`) of each library file.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "main.rs"))
        .map(|file| {
            let rel = file.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            (parts, file)
        })
        .collect()
}

/// The text without comments and string literals (where paths are not
/// imports), and without its unit tests (a file's `#[cfg(test)]` module
/// comes last; its `super::*` is the file itself).
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if !escaped && c == '"' {
                        break;
                    }
                    escaped = !escaped && c == '\\';
                }
                out.push_str("\"\"");
            }
            // A char literal such as '"' or '{' (lifetimes have no closing
            // quote within three characters).
            '\'' => {
                let rest: String = chars.clone().take(3).collect();
                if let Some(end) = rest.find('\'').filter(|&e| e > 0) {
                    for _ in 0..=end {
                        chars.next();
                    }
                    out.push_str("' '");
                } else {
                    out.push(c);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| match p.as_str() {
            "self" => prefix.trim_end_matches("::").to_string(),
            _ => format!("{prefix}{p}"),
        })
        .collect()
}

/// `a::b as c` → (`a::b`, `c`); `a::b` → (`a::b`, `b`).
fn split_alias(path: &str) -> (&str, &str) {
    match path.split_once(" as ") {
        Some((p, alias)) => (p.trim(), alias.trim()),
        None => (path.trim(), path.rsplit("::").next().unwrap_or(path).trim()),
    }
}

/// The paths of every `use` statement of `code` (with their aliases);
/// `public`: only `pub use` re-exports.
fn use_paths(code: &str, public: bool) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].trim_end();
        let glued = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + 4..];
        if glued {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        if !public || before.ends_with("pub") || before.ends_with(')') {
            paths.extend(expand(&rest[..end]));
        }
    }
    paths
}

/// A path as written in module `here`, made absolute (segments from the
/// crate root); `None` for an empty one.
fn absolute(path: &str, here: &[String]) -> Option<Vec<String>> {
    // `super` is the parent of the file's module (a `mod.rs` is its
    // directory's module, any other file a module of its own).
    let mut segs: Vec<String> = path.split("::").map(|s| s.trim().to_string()).collect();
    let mut base = match segs.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("super") => here[..here.len().saturating_sub(1)].to_vec(),
        Some("self") => here.to_vec(),
        // A child module named without `self::` (2018 paths), or another
        // crate (resolves to this file and is dropped).
        Some("") | None => return None,
        Some(_) => {
            segs.insert(0, "self".into());
            here.to_vec()
        }
    };
    segs.remove(0);
    while segs.first().map(String::as_str) == Some("super") {
        base.pop();
        segs.remove(0);
    }
    base.extend(segs);
    Some(base)
}

/// Every module path `text` (the file of module `here`) refers to.
fn references(text: &str, here: &[String]) -> Vec<Vec<String>> {
    let code = code(text);
    let mut paths: Vec<String> = use_paths(&code, false)
        .iter()
        .map(|p| split_alias(p).0.to_string())
        .collect();
    for anchor in ["crate::", "super::"] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(anchor) {
            let before = rest[..at].chars().last();
            let tail = &rest[at..];
            let len = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            // `super::{a, b}` is a use tree, read above: only a path with a
            // segment after the anchor counts here.
            let path = tail[..len].trim_end_matches(':');
            let word = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if word && path.len() > anchor.len() {
                paths.push(path.to_string());
            }
            rest = &rest[at + anchor.len()..];
        }
    }
    paths.iter().filter_map(|p| absolute(p, here)).collect()
}

/// The crate's modules, and each module's `pub use` re-exports: exported
/// name → the absolute path it stands for.
struct Crate {
    files: BTreeMap<Vec<String>, PathBuf>,
    reexports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let files = modules(src);
        let reexports = files
            .iter()
            .map(|(module, file)| {
                let code = code(&std::fs::read_to_string(file).unwrap());
                let names = use_paths(&code, true)
                    .iter()
                    .filter_map(|p| {
                        let (path, name) = split_alias(p);
                        Some((name.to_string(), absolute(path, module)?))
                    })
                    .filter(|(name, _)| name != "*")
                    .collect();
                (module.clone(), names)
            })
            .collect();
        Crate { files, reexports }
    }

    /// The file that defines what `path` names: its longest module prefix,
    /// followed through re-exports.
    fn resolve(&self, path: &[String]) -> Option<PathBuf> {
        let mut path = path.to_vec();
        for _ in 0..8 {
            let n = (1..=path.len())
                .rev()
                .find(|&n| self.files.contains_key(&path[..n]))?;
            let module = &path[..n];
            match path
                .get(n)
                .and_then(|name| self.reexports.get(module)?.get(name))
            {
                Some(source) if source.as_slice() != path.as_slice() => {
                    path = source.iter().chain(&path[n + 1..]).cloned().collect();
                }
                _ => return self.files.get(module).cloned(),
            }
        }
        None
    }
}

/// Strongly connected components of more than one file (Tarjan).
fn cycles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on_stack: BTreeSet<&'a PathBuf>,
        out: Vec<Vec<PathBuf>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a PathBuf) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.out
}

fn import_graph(src: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let krate = Crate::read(src);
    let mut graph = BTreeMap::new();
    for (module, file) in &krate.files {
        let text = std::fs::read_to_string(file).unwrap();
        let targets: BTreeSet<PathBuf> = references(&text, module)
            .iter()
            .filter_map(|path| krate.resolve(path))
            .filter(|target| target != file)
            .collect();
        graph.insert(file.clone(), targets);
    }
    graph
}

#[test]
fn the_crate_has_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    assert!(graph.len() > 50, "{} files read", graph.len());
    let found = cycles(&graph);
    let shown: Vec<String> = found
        .iter()
        .map(|files| {
            let members: BTreeSet<&PathBuf> = files.iter().collect();
            let arrows: Vec<String> = files
                .iter()
                .flat_map(|f| {
                    graph[f]
                        .iter()
                        .filter(|t| members.contains(t))
                        .map(move |t| format!("    {} -> {}", f.display(), t.display()))
                })
                .collect();
            format!("{} files:\n{}", files.len(), arrows.join("\n"))
        })
        .collect();
    assert!(found.is_empty(), "import cycles:\n{}", shown.join("\n"));
}

#[test]
fn the_reader_resolves_paths_to_the_files_they_name() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    let edges = |from: &str| graph[&src.join(from)].clone();
    // A nested use tree, `super::`, a child module named without `self::`.
    assert!(edges("grpo/trainer.rs").contains(&src.join("grpo/collect.rs")));
    assert!(edges("grpo/trainer.rs").contains(&src.join("run/mod.rs")));
    assert!(edges("sft/mod.rs").contains(&src.join("sft/config.rs")));
    assert!(edges("config.rs").contains(&src.join("config/rules.rs")));
    // A cycle is found when there is one.
    let mut cyclic = BTreeMap::new();
    let (a, b) = (PathBuf::from("a.rs"), PathBuf::from("b.rs"));
    cyclic.insert(a.clone(), BTreeSet::from([b.clone()]));
    cyclic.insert(b.clone(), BTreeSet::from([a.clone()]));
    assert_eq!(cycles(&cyclic), vec![vec![a, b]]);
    assert_eq!(
        expand("crate::a::{b, c::{d, self}, e as f}"),
        vec![
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c",
            "crate::a::e as f"
        ]
    );
    // A name a child takes from its parent's re-export points at the file
    // that defines it.
    assert!(edges("data/manifest.rs").contains(&src.join("data/rating.rs")));
    assert!(!edges("data/manifest.rs").contains(&src.join("data/mod.rs")));
}
