//! The layer rule, checked on the sources: every `crate::` path of every
//! file is an edge to the module it names, and the graph must have no
//! circle, with edges pointing down only (js -> engine -> store -> the
//! shared bottom modules `errors` and `clock`). `store` uses no napi at all
//! but the `#[napi(object)]` derive on plain data it shares with JS;
//! `engine` only that and napi's Tokio runtime (`spawn`), never JS values.
//! `cargo test layers -- --nocapture` prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module's layer: an edge may only go to the same layer or a lower one.
fn layer(module: &str) -> u8 {
  match module.split("::").next().unwrap_or("") {
    "errors" | "clock" | "random" => 0,
    "store" => 1,
    "engine" => 2,
    "js" => 3,
    _ => 4, // the crate root (lib.rs) and this test
  }
}

/// Every module of the crate, from its file: `src/js/lock.rs` is
/// `js::lock`, `src/js/mod.rs` is `js`, `src/lib.rs` is `` (the root).
fn modules(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
  for entry in std::fs::read_dir(dir).unwrap() {
    let path = entry.unwrap().path();
    let name = path.file_stem().unwrap().to_str().unwrap().to_string();
    if path.is_dir() {
      modules(&path, &format!("{prefix}{name}::"), out);
    } else if path.extension().is_some_and(|e| e == "rs") {
      let module = match name.as_str() {
        "lib" => String::new(),
        "mod" => prefix.trim_end_matches("::").to_string(),
        _ => format!("{prefix}{name}"),
      };
      out.insert(module, std::fs::read_to_string(&path).unwrap());
    }
  }
}

/// The module a `crate::a::b::C` path names: its longest prefix that is a module.
fn target(path: &str, known: &BTreeMap<String, String>) -> Option<String> {
  let parts: Vec<&str> = path.split("::").collect();
  (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|m| known.contains_key(m))
}

/// The `crate::` paths in `source`, with `use crate::{a, b::c}` groups opened.
fn crate_paths(source: &str) -> Vec<String> {
  let mut paths = Vec::new();
  let mut rest = source;
  while let Some(at) = rest.find("crate::") {
    rest = &rest[at + "crate::".len()..];
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '{')).unwrap_or(rest.len());
    let path = rest[..end].trim_end_matches(':');
    match path.split_once('{') {
      // A group: `crate::{a::X, b}` or `crate::a::{X, Y}`.
      Some((head, _)) => {
        let close = rest.find('}').unwrap_or(rest.len());
        for item in rest[rest.find('{').unwrap() + 1..close].split(',') {
          let item = item.trim();
          if !item.is_empty() {
            paths.push(format!("{head}{item}"));
          }
        }
      }
      None => paths.push(path.to_string()),
    }
  }
  paths
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
  let mut known = BTreeMap::new();
  modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), "", &mut known);
  known
    .iter()
    .map(|(module, source)| {
      let edges = crate_paths(source)
        .iter()
        .filter_map(|p| target(p, &known))
        .filter(|t| t != module)
        .collect();
      (module.clone(), edges)
    })
    .collect()
}

fn name(module: &str) -> &str {
  if module.is_empty() { "(root)" } else { module }
}

#[test]
fn layers_point_down_and_no_module_is_in_a_circle() {
  let graph = graph();
  let mut upward = Vec::new();
  for (from, edges) in &graph {
    println!("{:<20} -> {}", name(from), edges.iter().map(|m| name(m)).collect::<Vec<_>>().join(", "));
    upward.extend(edges.iter().filter(|to| layer(to) > layer(from)).map(|to| format!("{} -> {}", name(from), name(to))));
  }
  assert!(upward.is_empty(), "imports pointing up a layer: {upward:?}");
  // Kahn's algorithm: whatever cannot be ordered is in a circle.
  let mut left = graph.clone();
  while let Some(free) = left.iter().find(|(_, edges)| edges.iter().all(|e| !left.contains_key(e))).map(|(m, _)| m.clone()) {
    left.remove(&free);
  }
  assert!(left.is_empty(), "modules in a circle: {:?}", left.keys().map(|m| name(m)).collect::<Vec<_>>());
  println!("{} modules, acyclic, no import points up a layer", graph.len());
}

#[test]
fn store_uses_no_napi_and_engine_no_js_values() {
  let mut known = BTreeMap::new();
  modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), "", &mut known);
  for (module, source) in &known {
    let code = source.split("#[cfg(test)]").next().unwrap();
    let lines = code.lines().filter(|l| !l.trim_start().starts_with("//"));
    let napi: Vec<&str> = lines.filter(|l| l.contains("napi")).map(str::trim).collect();
    let allowed = |l: &&str| {
      *l == "use napi_derive::napi;"
        || l.starts_with("#[napi(object")
        || (layer(module) == 2 && l.contains("napi::bindgen_prelude::spawn("))
    };
    if layer(module) <= 2 {
      let bad: Vec<_> = napi.iter().filter(|l| !allowed(l)).collect();
      assert!(bad.is_empty(), "{}: napi beyond the object derive{}: {bad:?}", name(module), if layer(module) == 2 { " and spawn" } else { "" });
    }
  }
}

#[test]
fn group_imports_are_opened() {
  let paths = crate_paths("use crate::engine::{core::Core, wait};\nuse crate::errors::LockError;\n");
  assert_eq!(paths, vec!["engine::core::Core", "engine::wait", "errors::LockError"]);
}
