//! The workspace's shape, checked: layers depend downward, and no two
//! files import each other, however far round.
//!
//! Each layer of the stack is a folder whose `mod.rs` essay ends with a line
//! `//! May use: a, b, layer::module.` (the files beside the folders,
//! `config.rs` and `fuzz.rs`, state theirs too). This test reads every
//! source file, collects the `crate::` and `super::` paths of its non-test
//! code, and fails on a path into a layer the file's own layer may not use,
//! on a "May use" graph that is not one-way, and on any circle of files
//! importing each other, in the stack and in the demo.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A source file, named by its module path inside the crate: `wire/quad`,
/// `engine` (for `engine/mod.rs`), `config`.
type Module = String;

struct Crate {
    /// Each file's module and the modules its non-test code names.
    uses: BTreeMap<Module, BTreeSet<Module>>,
    /// Items that `lib.rs` or `main.rs` re-exports, by the module they come from.
    root_items: BTreeMap<String, Module>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("source folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).expect("inside src");
    let mut name = rel.with_extension("").to_string_lossy().replace('\\', "/");
    if let Some(dir) = name.strip_suffix("/mod") {
        name = dir.to_string();
    }
    name
}

/// The code a file compiles outside tests, without comments.
fn code(text: &str) -> String {
    let text = match text.find("\n#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|line| {
            // A `//` that is not inside a string starts a comment.
            let mut quotes = 0;
            let bytes = line.as_bytes();
            for i in 0..bytes.len() {
                match bytes[i] {
                    b'"' if i == 0 || bytes[i - 1] != b'\\' => quotes += 1,
                    b'/' if quotes % 2 == 0 && bytes.get(i + 1) == Some(&b'/') => {
                        return &line[..i];
                    }
                    _ => {}
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that starts at `start` in `code` (`crate`, `super`), as its
/// segments, with `use` trees (`crate::{a::b, c}`) expanded.
fn paths(code: &str, start: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let pattern = format!("{start}::");
    let mut from = 0;
    while let Some(i) = code[from..].find(&pattern) {
        let at = from + i;
        from = at + pattern.len();
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        tree(&code[from..], Vec::new(), &mut out);
    }
    out
}

/// Reads one use tree at the start of `s`, prefixed by `prefix`; returns
/// how many bytes it took.
fn tree(s: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let s_trim = s.trim_start();
    let skipped = s.len() - s_trim.len();
    if let Some(inner) = s_trim.strip_prefix('{') {
        let mut used = 1;
        let mut rest = inner;
        loop {
            let n = tree(rest, prefix.clone(), out);
            used += n;
            rest = &rest[n..];
            let t = rest.trim_start();
            used += rest.len() - t.len();
            rest = t;
            if let Some(r) = rest.strip_prefix(',') {
                used += 1;
                rest = r;
            } else if let Some(_r) = rest.strip_prefix('}') {
                return skipped + used + 1;
            } else {
                return skipped + used;
            }
            if let Some(_r) = rest.trim_start().strip_prefix('}') {
                let t = rest.trim_start();
                used += rest.len() - t.len() + 1;
                return skipped + used;
            }
        }
    }
    let ident: String = s_trim
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '*')
        .collect();
    if ident.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix);
        }
        return skipped;
    }
    let mut path = prefix;
    path.push(ident.clone());
    let after = &s_trim[ident.len()..];
    if let Some(next) = after.strip_prefix("::") {
        return skipped + ident.len() + 2 + tree(next, path, out);
    }
    out.push(path);
    skipped + ident.len()
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        let modules: BTreeSet<Module> = files.iter().map(|f| module_of(src, f)).collect();
        let mut crate_ = Crate {
            uses: BTreeMap::new(),
            root_items: BTreeMap::new(),
        };
        for root in ["lib.rs", "main.rs"] {
            let Ok(text) = fs::read_to_string(src.join(root)) else {
                continue;
            };
            for p in paths(&code(&text.replace("pub use ", "pub use crate::")), "crate") {
                if let Some(item) = p.last() {
                    let m = resolve(&modules, "", &p[..p.len() - 1]);
                    crate_.root_items.insert(item.clone(), m);
                }
            }
        }
        for file in &files {
            let me = module_of(src, file);
            if me == "lib" || me == "main" {
                continue;
            }
            let text = fs::read_to_string(file).expect("readable source");
            let code = code(&text);
            let mut used = BTreeSet::new();
            for p in paths(&code, "crate") {
                used.insert(resolve(&modules, "", &p));
            }
            let parent = me.rsplit_once('/').map_or("", |(dir, _)| dir);
            for p in paths(&code, "super") {
                used.insert(resolve(&modules, parent, &p));
            }
            // A path through a child module this file declares (`mod x;`,
            // then `x::f()` or `use x::T`).
            for child in children(&code) {
                for p in paths(&code, &child) {
                    let mut p = p;
                    p.insert(0, child.clone());
                    used.insert(resolve(&modules, &me, &p));
                }
            }
            used.remove("");
            used.remove(&me);
            crate_.uses.insert(me, used);
        }
        // A path to a re-exported root item is a path to where it comes from.
        let root_items = crate_.root_items.clone();
        for used in crate_.uses.values_mut() {
            *used = used
                .iter()
                .map(|m| root_items.get(m).cloned().unwrap_or_else(|| m.clone()))
                .collect();
        }
        crate_
    }
}

/// The modules a file declares: `mod x;` and `pub mod x;`.
fn children(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect()
}

/// The longest module that `path` (relative to `base`) names.
fn resolve(modules: &BTreeSet<Module>, base: &str, path: &[String]) -> Module {
    let mut best = String::new();
    let mut name = base.to_string();
    for seg in path {
        if !name.is_empty() {
            name.push('/');
        }
        name.push_str(seg);
        if modules.contains(&name) {
            best = name.clone();
        }
    }
    if best.is_empty() && !base.is_empty() {
        // An item of `base` itself (`super::Plan`).
        return base.to_string();
    }
    if best.is_empty() {
        // A root item (`crate::NetConfig`), resolved later, or nothing.
        return path.first().cloned().unwrap_or_default();
    }
    best
}

/// The layer a module belongs to: its folder, or itself beside the folders.
fn layer(m: &str) -> &str {
    m.split('/').next().unwrap_or(m)
}

/// Each layer's "May use" line, from its folder's `mod.rs` or its file.
fn rules(src: &Path, crate_: &Crate) -> BTreeMap<String, BTreeSet<String>> {
    let mut rules = BTreeMap::new();
    for m in crate_.uses.keys() {
        let l = layer(m);
        let file = if src.join(l).is_dir() {
            src.join(l).join("mod.rs")
        } else {
            src.join(format!("{l}.rs"))
        };
        let text = fs::read_to_string(&file).expect("layer file");
        let line = text
            .lines()
            .find_map(|s| s.strip_prefix("//! May use:"))
            .unwrap_or_else(|| panic!("{} has no \"//! May use:\" line", file.display()));
        let allowed = line
            .trim()
            .trim_end_matches('.')
            .split(',')
            .map(|s| s.trim().replace("::", "/"))
            .filter(|s| !s.is_empty() && !s.starts_with("nothing"))
            .collect();
        rules.insert(l.to_string(), allowed);
    }
    rules
}

/// A circle in `graph`, if there is one, as the nodes round it.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut done, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn src(krate: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src")
}

#[test]
fn the_stack_s_layers_depend_downward() {
    let src = src("stack");
    let krate = Crate::read(&src);
    let rules = rules(&src, &krate);
    let mut wrong = Vec::new();
    for (m, used) in &krate.uses {
        let mine = layer(m);
        for u in used {
            let theirs = layer(u);
            let allowed = &rules[mine];
            if theirs != mine && !allowed.contains(theirs) && !allowed.contains(u) {
                wrong.push(format!("{m} uses {u}, but {mine} may use only {allowed:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let layers: BTreeMap<String, BTreeSet<String>> = rules
        .iter()
        .map(|(l, a)| (l.clone(), a.iter().map(|u| layer(u).to_string()).collect()))
        .collect();
    assert_eq!(circle(&layers), None, "the May use lines go round");
}

#[test]
fn no_two_files_import_each_other() {
    for krate in ["stack", "demo"] {
        let uses = Crate::read(&src(krate)).uses;
        assert_eq!(circle(&uses), None, "a circle of imports in {krate}/src");
    }
}

#[test]
fn the_checker_sees_use_trees_and_comments() {
    let code = code(
        "use crate::{wire::quad::{Quad, SocketId}, observe::event};\n// crate::api\nlet s = \"//\"; crate::engine::driver::Engine::new();",
    );
    assert_eq!(
        paths(&code, "crate"),
        [
            vec!["wire", "quad", "Quad"],
            vec!["wire", "quad", "SocketId"],
            vec!["observe", "event"],
            vec!["engine", "driver", "Engine", "new"],
        ]
    );
}
