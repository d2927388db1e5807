//! The rooms of `src/` import only what CONTRIBUTING.md's table allows. The
//! table is the rule's one home: this test reads it, then every `crate::<room>`
//! path in each room's production code (test modules are exempt: a unit test
//! may build fixtures from any room). The crate root's own items
//! (`crate::error_chain`) are no room and free to all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `room → rooms it may import`, from the table under "What each room imports".
fn allowed(contributing: &str) -> BTreeMap<String, BTreeSet<String>> {
    let section = contributing
        .split("### What each room imports")
        .nth(1)
        .expect("CONTRIBUTING.md has a `### What each room imports` section");
    let mut table = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Some(room) = cells
            .first()
            .and_then(|c| c.strip_prefix('`')?.strip_suffix('`'))
        else {
            continue; // the header and its rule
        };
        let everything: BTreeSet<String> = BTreeSet::from(["*".to_string()]);
        let imports = cells
            .get(1)
            .filter(|c| !c.contains("everything"))
            .map(|c| {
                c.split(',')
                    .filter_map(|r| r.trim().strip_prefix('`')?.strip_suffix('`'))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or(everything);
        table.insert(room.to_string(), imports);
    }
    table
}

/// The production part of a source file: before its first `#[cfg(test)]`.
fn production(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// Every room a piece of code names as `crate::<room>` (or, for the
/// embedded cluster, as its own crate).
fn rooms_named(code: &str, rooms: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `driftline_crate::`, not ours
        }
        let name: String = code[i + 7..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if rooms.contains(&name) {
            found.insert(name);
        }
    }
    if code.contains("driftline_cluster::") {
        found.insert("cluster".into());
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(file, room it imports)` for every import the table does not allow.
fn violations(src: &Path, table: &BTreeMap<String, BTreeSet<String>>) -> Vec<(String, String)> {
    let rooms: BTreeSet<String> = table.keys().cloned().collect();
    let mut wrong = Vec::new();
    for room in &rooms {
        let dir = src.join(room);
        let mut files = Vec::new();
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(src.join(format!("{room}.rs")));
        }
        for file in files {
            // Whole files that only tests compile.
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name == "tests.rs" || name == "fixtures.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for named in rooms_named(production(&text), &rooms) {
                let may = &table[room];
                if &named != room && !may.contains(&named) && !may.contains("*") {
                    wrong.push((file.display().to_string(), named));
                }
            }
        }
    }
    wrong
}

#[test]
fn every_room_imports_only_what_the_table_allows() {
    let table = allowed(&std::fs::read_to_string("CONTRIBUTING.md").expect("CONTRIBUTING.md"));
    // Every directory room of src/ is in the table, so a new room must say what it imports.
    let on_disk: BTreeSet<String> = std::fs::read_dir("src")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            e.path()
                .is_dir()
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    let listed: BTreeSet<String> = table.keys().cloned().collect();
    assert!(
        on_disk.is_subset(&listed),
        "rooms missing from CONTRIBUTING.md's table: {:?}",
        on_disk.difference(&listed).collect::<Vec<_>>()
    );
    let wrong = violations(Path::new("src"), &table);
    assert!(
        wrong.is_empty(),
        "imports outside CONTRIBUTING.md's table (file → room): {wrong:#?}"
    );
}

#[test]
fn the_check_catches_a_wrong_import_and_ignores_test_code_and_lookalikes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("api")).unwrap();
    std::fs::create_dir_all(src.join("policy")).unwrap();
    std::fs::write(
        src.join("api/mod.rs"),
        "use crate::policy::decide; // wrong\n",
    )
    .unwrap();
    std::fs::write(
        src.join("policy/mod.rs"),
        "use crate::api::Model;\nlet x = my_crate::cli::x;\n#[cfg(test)]\nmod tests { use crate::cli::serve; }\n",
    )
    .unwrap();
    let table = allowed(
        "### What each room imports\n\n| room | may import |\n|---|---|\n| `api` | — |\n| `policy` | `api` |\n| `cli` | everything |\n",
    );
    let wrong = violations(src, &table);
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert!(wrong[0].0.ends_with("api/mod.rs") && wrong[0].1 == "policy");
}

/// `room::module` for every namespace CONTRIBUTING.md's "Public namespaces"
/// paragraph lists.
fn public_namespaces(contributing: &str) -> BTreeSet<String> {
    let paragraph = contributing
        .split("Public namespaces:")
        .nth(1)
        .expect("CONTRIBUTING.md has a `Public namespaces:` paragraph")
        .split("\n\n")
        .next()
        .unwrap_or_default();
    paragraph
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|name| name.contains("::"))
        .map(str::to_string)
        .collect()
}

/// `room::module` for every `pub mod` (of any `pub(…)` reach) a room's
/// `mod.rs` declares.
fn public_modules(src: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(src).expect("readable src") {
        let dir = entry.expect("dir entry").path();
        let Ok(text) = std::fs::read_to_string(dir.join("mod.rs")) else {
            continue;
        };
        let room = dir.file_name().unwrap().to_string_lossy().into_owned();
        for line in production(&text).lines() {
            let line = line.trim_start();
            let Some(rest) = line.strip_prefix("pub") else {
                continue;
            };
            let rest = match rest.strip_prefix('(') {
                Some(reach) => reach.split_once(')').map_or("", |(_, r)| r),
                None => rest,
            };
            if let Some(name) = rest.trim_start().strip_prefix("mod ") {
                let name =
                    name.trim_end_matches(|c: char| c == ';' || c == '{' || c.is_whitespace());
                found.insert(format!("{room}::{name}"));
            }
        }
    }
    found
}

#[test]
fn rooms_keep_their_modules_private_but_for_the_listed_namespaces() {
    let listed =
        public_namespaces(&std::fs::read_to_string("CONTRIBUTING.md").expect("CONTRIBUTING.md"));
    let public = public_modules(Path::new("src"));
    let unlisted: Vec<_> = public.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "`pub mod` in a room's mod.rs that CONTRIBUTING.md does not list as a public namespace \
         (make it private behind the room's `pub use` surface, or list it): {unlisted:?}"
    );
    let stale: Vec<_> = listed.difference(&public).collect();
    assert!(
        stale.is_empty(),
        "CONTRIBUTING.md lists namespaces that are not `pub mod`: {stale:?}"
    );
}

#[test]
fn the_namespace_check_sees_every_reach_of_pub_and_skips_test_code() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("api")).unwrap();
    std::fs::write(
        src.join("api/mod.rs"),
        "mod model;\npub mod names;\npub(crate) mod words;\n#[cfg(test)]\npub mod fixtures;\n",
    )
    .unwrap();
    assert_eq!(
        public_modules(src),
        BTreeSet::from(["api::names".to_string(), "api::words".to_string()])
    );
    assert_eq!(
        public_namespaces("Public namespaces: the rest\n`api::names`, `x`.\n\nnot `api::words`"),
        BTreeSet::from(["api::names".to_string()])
    );
}

/// Lines of a file before its first `#[cfg(test)]`: what the 800-line
/// budget counts.
fn production_lines(text: &str) -> usize {
    production(text).lines().count()
}

#[test]
fn no_source_file_has_more_than_800_production_lines() {
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    let over: Vec<(String, usize)> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("readable source");
            (f.display().to_string(), production_lines(&text))
        })
        .filter(|(_, n)| *n > 800)
        .collect();
    assert!(
        over.is_empty(),
        "files over 800 production lines (split them along their seams): {over:?}"
    );
}
