//! Checks of what ARCHITECTURE.md says about the code's shape:
//!
//! - the layers are crates, and Cargo keeps them apart; this checks which
//!   they are (`cargo metadata`): `switchyard-api` and `switchyard-core`
//!   depend on no other crate of the workspace, the server on those two, the
//!   CLI on the three, and the core on no transport or protobuf crate;
//! - what Cargo cannot see, inside a crate: no import cycles between modules,
//!   the file-level graph of every `crate::…` and `super::…` path in each
//!   crate's `src/` (in `use` trees and in expressions alike, test modules
//!   included) has no cycle.
//!
//! The checker is plain code over the source text: comments and literals are
//! blanked, then paths are read from the tokens, with inline modules (`mod
//! tests { … }`) tracked so that `super` means what the compiler takes it to
//! mean. Its own tests below show it finds what it must.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// A module file: its module path (`["flag", "store"]`) and its source.
struct SourceFile {
    module: Vec<String>,
    text: String,
}

/// Replaces comments, string and character literals with spaces, keeping
/// line breaks, so that only code is left.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied().unwrap_or('\0');
        if at(0) == '/' && at(1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
                out.push(' ');
            }
        } else if at(0) == '/' && at(1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if (at(0) == 'r' || (at(0) == 'b' && at(1) == 'r'))
            && !c
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
            && {
                let s = if at(0) == 'b' { 2 } else { 1 };
                let mut k = s;
                while at(k) == '#' {
                    k += 1;
                }
                at(k) == '"'
            }
        {
            // A raw string: r"…", r#"…"#, br#"…"#.
            let mut k = if at(0) == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while at(k) == '#' {
                hashes += 1;
                k += 1;
            }
            for _ in 0..=k {
                out.push(' ');
            }
            i += k + 1;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|h| c.get(i + h) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if at(0) == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if at(0) == '\'' && (at(1) == '\\' || at(2) == '\'') {
            // A character literal ('x', '\n', '\u{1F600}'), not a lifetime.
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '\'' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    out.push(' ');
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Splits code into identifiers, `::` and single punctuation characters.
fn tokens(code: &str) -> Vec<String> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_alphabetic() || c[i] == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(c[start..i].iter().collect());
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else if c[i].is_whitespace() {
            i += 1;
        } else if c[i].is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                i += 1;
            }
        } else {
            out.push(c[i].to_string());
            i += 1;
        }
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Reads a path or `use` tree starting at `tokens[*i]` (a segment), appending
/// every full path it names to `out`.
fn read_tree(t: &[String], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut prefix = prefix;
    loop {
        let Some(tok) = t.get(*i) else {
            out.push(prefix);
            return;
        };
        if tok == "{" {
            *i += 1;
            loop {
                match t.get(*i).map(String::as_str) {
                    None => return,
                    Some("}") => {
                        *i += 1;
                        return;
                    }
                    Some(",") => *i += 1,
                    Some(_) => read_tree(t, i, prefix.clone(), out),
                }
            }
        } else if tok == "*" {
            *i += 1;
            out.push(prefix);
            return;
        } else if is_ident(tok) {
            if tok != "self" {
                prefix.push(tok.clone());
            }
            *i += 1;
            if t.get(*i).map(String::as_str) == Some("::") {
                *i += 1;
                continue;
            }
            out.push(prefix);
            return;
        } else {
            out.push(prefix);
            return;
        }
    }
}

/// The module paths a file refers to with `crate::` or `super::`, resolved to
/// absolute module paths (their items' modules or deeper; the caller maps
/// them to files).
fn references(file: &SourceFile) -> Vec<Vec<String>> {
    let t = tokens(&strip(&file.text));
    let mut out = Vec::new();
    // Inline modules open at a brace depth: (name, depth).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < t.len() {
        match t[i].as_str() {
            "mod"
                if t.get(i + 1).is_some_and(|n| is_ident(n))
                    && t.get(i + 2).map(String::as_str) == Some("{") =>
            {
                inline.push((t[i + 1].clone(), depth));
                depth += 1;
                i += 3;
                continue;
            }
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "crate" | "super" if t.get(i + 1).map(String::as_str) == Some("::") => {
                // `$crate::` inside a macro is the crate of the macro's user.
                if i > 0 && t[i - 1] == "$" {
                    i += 1;
                    continue;
                }
                let mut base: Vec<String> = if t[i] == "crate" {
                    Vec::new()
                } else {
                    let mut m = file.module.clone();
                    m.extend(inline.iter().map(|(n, _)| n.clone()));
                    m.pop();
                    m
                };
                i += 2;
                while t.get(i).map(String::as_str) == Some("super")
                    && t.get(i + 1).map(String::as_str) == Some("::")
                {
                    base.pop();
                    i += 2;
                }
                read_tree(&t, &mut i, base, &mut out);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Maps an absolute module path to the file of its longest known prefix.
fn file_of<'a>(path: &[String], files: &'a BTreeSet<Vec<String>>) -> Option<&'a Vec<String>> {
    (0..=path.len())
        .rev()
        .find_map(|n| files.get(&path[..n].to_vec()))
}

/// The file-level dependency graph: module → modules it refers to.
fn graph(files: &[SourceFile]) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let known: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    files
        .iter()
        .map(|f| {
            let deps = references(f)
                .iter()
                .filter_map(|p| file_of(p, &known))
                .filter(|m| **m != f.module)
                .cloned()
                .collect();
            (f.module.clone(), deps)
        })
        .collect()
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Returns every cycle found (as `a -> b -> a`), one per strongly connected
/// component of more than one module.
fn cycles(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<String> {
    // Tarjan's algorithm, iterative enough for a crate's modules.
    struct State<'a> {
        g: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        next: usize,
        sccs: Vec<Vec<&'a Vec<String>>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.g.get(v).into_iter().flatten() {
            let Some((w, _)) = s.g.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w);
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                s.sccs.push(scc);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        sccs: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    // Show one concrete cycle of each component: a shortest path back.
    s.sccs
        .iter()
        .map(|scc| {
            let members: BTreeSet<&Vec<String>> = scc.iter().copied().collect();
            let start = *members.iter().next().unwrap();
            let mut prev: BTreeMap<&Vec<String>, &Vec<String>> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            let mut end = None;
            'bfs: while let Some(v) = queue.pop_front() {
                for w in &g[v] {
                    if w == start {
                        end = Some(v);
                        break 'bfs;
                    }
                    if members.contains(w) && !prev.contains_key(w) {
                        let (w, _) = g.get_key_value(w).unwrap();
                        prev.insert(w, v);
                        queue.push_back(w);
                    }
                }
            }
            let mut back = Vec::new();
            let mut v = end.unwrap_or(start);
            while v != start {
                back.push(v);
                v = prev[v];
            }
            back.reverse();
            let mut path = vec![start];
            path.extend(back);
            path.push(start);
            path.iter()
                .map(|m| name(m))
                .collect::<Vec<_>>()
                .join(" -> ")
        })
        .collect()
}

/// Every module file of the library crate at `root` (its `src/`, without a
/// binary's `main.rs`).
fn library(root: &Path) -> Vec<SourceFile> {
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
    let src = root.join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .filter(|p| p != &src.join("main.rs"))
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap();
            let mut module: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|l| l == "mod" || l == "lib") {
                module.pop();
            }
            SourceFile {
                module,
                text: std::fs::read_to_string(&p).unwrap(),
            }
        })
        .collect()
}

/// The workspace's library crates, by directory name.
const CRATES: [&str; 4] = ["api", "core", "server", "cli"];

fn workspace_crate(name: &str) -> Vec<SourceFile> {
    library(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crates")
            .join(name),
    )
}

#[test]
fn no_import_cycles_between_modules() {
    for name in CRATES {
        let files = workspace_crate(name);
        assert!(files.len() >= 5, "{name}: the walk found the sources");
        let g = graph(&files);
        let found = cycles(&g);
        assert!(
            found.is_empty(),
            "{name}: import cycles between modules (a -> b: a uses b through a crate:: or \
             super:: path):\n  {}",
            found.join("\n  ")
        );
    }
    let core = graph(&workspace_crate("core"));
    let edges: usize = core.values().map(BTreeSet::len).sum();
    assert!(edges > 50, "the graph has the core's edges ({edges})");
}

/// Which crate of the workspace may depend on which, and which crates the
/// core never names: Cargo holds the layers, this says which they are.
#[test]
fn the_crates_depend_one_way_and_the_core_names_no_transport() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deps = |package: &str| -> BTreeSet<String> {
        let p = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == package)
            .unwrap_or_else(|| panic!("no package {package}"));
        p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let ours = |d: &BTreeSet<String>| -> Vec<String> {
        d.iter()
            .filter(|n| n.starts_with("switchyard"))
            .cloned()
            .collect()
    };
    assert_eq!(ours(&deps("switchyard-api")), Vec::<String>::new());
    assert_eq!(ours(&deps("switchyard-core")), Vec::<String>::new());
    assert_eq!(
        ours(&deps("switchyard-server")),
        ["switchyard-api", "switchyard-core"]
    );
    assert_eq!(
        ours(&deps("switchyard-cli")),
        ["switchyard-api", "switchyard-core", "switchyard-server"]
    );
    let transports = [
        "tonic",
        "tonic-web",
        "tonic-prost",
        "tonic-reflection",
        "axum",
        "hyper",
        "hyper-util",
        "h2",
        "tower",
        "tower-http",
        "http",
        "http-body",
        "http-body-util",
        "prost",
        "prost-types",
        "prost-reflect",
        "pbjson",
        "pbjson-types",
        "opentelemetry-otlp",
    ];
    let named: Vec<&str> = transports
        .into_iter()
        .filter(|t| deps("switchyard-core").contains(*t))
        .collect();
    assert!(
        named.is_empty(),
        "the core depends on transport or protobuf crates: {named:?}"
    );
}

// The checker's own tests: it must find what it is there to find.

fn fake(files: &[(&str, &str)]) -> Vec<SourceFile> {
    files
        .iter()
        .map(|(m, text)| SourceFile {
            module: if m.is_empty() {
                Vec::new()
            } else {
                m.split("::").map(str::to_owned).collect()
            },
            text: text.to_string(),
        })
        .collect()
}

#[test]
fn the_checker_finds_cycles_through_use_trees_expressions_and_super() {
    let files = fake(&[
        ("", "pub mod a; pub mod b; pub mod c; pub mod d;"),
        ("d", ""),
        ("a", "use crate::{b::{self, Thing}, d};"),
        ("b", "fn f() { super::c::g(); }"),
        ("c", "fn g() -> crate::a::T { todo!() }"),
    ]);
    let found = cycles(&graph(&files));
    assert_eq!(found, ["a -> b -> c -> a"]);
}

#[test]
fn the_checker_ignores_comments_literals_tests_and_own_children() {
    let files = fake(&[
        ("", "pub mod a; pub mod b;"),
        (
            "a",
            r##"// use crate::b;
            /* crate::b::x() */ const S: &str = "crate::b::y"; const R: &str = r#"super::b"#;
            fn lt<'a>(x: &'a str) -> char { 'c' }
            pub mod inner;
            #[cfg(test)] mod tests { use super::*; fn t() { super::super::a::f(); } }"##,
        ),
        ("a::inner", "use super::f;"),
        ("b", "use crate::a::inner; pub(super) fn g() {}"),
    ]);
    let g = graph(&files);
    let a: Vec<String> = vec!["a".into()];
    assert!(g[&a].is_empty(), "{:?}", g[&a]);
    assert!(cycles(&g).is_empty());
}
