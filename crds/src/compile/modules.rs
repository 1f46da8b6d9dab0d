//! A plugin's modules: the entry module and the files it imports (`./name`), found among
//! the plugin's files (the keys of its ConfigMap, or the files of a directory), each
//! transpiled, so the proxy's module loader finds them by name.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::typescript::{ModuleRole, SourceError, transpile};
use crate::condition::Reason;

/// Extensions tried, in order, after the name as written: `./jwt` finds `jwt.ts`.
const EXTENSIONS: [&str; 2] = [".ts", ".js"];

/// The file name a specifier names when it is one the plugin may import: `./name`, a
/// file beside the importer (no directories, no `..`).
pub(crate) fn file_name(specifier: &str) -> Option<&str> {
    let name = specifier.strip_prefix("./")?;
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']);
    plain.then_some(name)
}

/// The file `specifier` (`./name`) imports: `name` itself if `exists`, else `name.ts`,
/// else `name.js`. The compiler and the proxy's module loader both resolve with this.
pub fn resolve(specifier: &str, mut exists: impl FnMut(&str) -> bool) -> Option<String> {
    let name = file_name(specifier)?;
    std::iter::once(name.to_owned())
        .chain(
            EXTENSIONS
                .iter()
                .map(|extension| format!("{name}{extension}")),
        )
        .find(|candidate| exists(candidate))
}

/// A plugin's JavaScript: the entry module and every module it imports, directly or not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Linked {
    /// The entry module.
    pub code: String,
    /// Imported modules by file name.
    pub modules: BTreeMap<String, String>,
}

impl Linked {
    /// `sha256:` of all the code: the plugin version the proxies load.
    pub fn code_hash(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.code.as_bytes());
        for (name, code) in &self.modules {
            for part in [name.as_bytes(), code.as_bytes()] {
                hash.update([0]);
                hash.update(part);
            }
        }
        format!("sha256:{}", hex::encode(hash.finalize()))
    }
}

/// Why a file of a plugin does not compile or link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleError {
    /// The file the error is in.
    pub file: String,
    /// What and where.
    pub error: SourceError,
}

impl std::fmt::Display for ModuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.error)
    }
}

/// Transpiles the entry module (file `entry`, text `source`) and every file it imports,
/// read with `read` (a file's text by name, `None` when there is no such file). All the
/// errors of every file are returned, so an author fixes them in one go.
pub fn link(
    entry: &str,
    source: &str,
    mut read: impl FnMut(&str) -> Option<String>,
) -> Result<Linked, Vec<ModuleError>> {
    let mut errors = Vec::new();
    let mut linked = Linked::default();
    // Files to transpile: (name, text, role).
    let mut queue = vec![(entry.to_owned(), source.to_owned(), ModuleRole::Entry)];
    while let Some((file, text, role)) = queue.pop() {
        let transpiled = match transpile(&text, role) {
            Ok(transpiled) => transpiled,
            Err(found) => {
                errors.extend(found.into_iter().map(|error| ModuleError {
                    file: file.clone(),
                    error,
                }));
                continue;
            }
        };
        for import in transpiled.imports {
            let mut text = None;
            let resolved = resolve(&import.specifier, |candidate| {
                text = if candidate == entry {
                    None
                } else {
                    read(candidate)
                };
                text.is_some() || candidate == entry
            });
            let refusal = match (&resolved, text) {
                (Some(name), _) if name == entry => format!(
                    "import of {:?}: the entry module {entry} cannot be imported by its own modules",
                    import.specifier
                ),
                (Some(name), Some(text)) => {
                    if name != &file && !linked.modules.contains_key(name) {
                        // Queued once: a placeholder marks it until it is transpiled.
                        linked.modules.insert(name.clone(), String::new());
                        queue.push((name.clone(), text, ModuleRole::Imported));
                    }
                    continue;
                }
                _ => {
                    let name = file_name(&import.specifier).unwrap_or(&import.specifier);
                    format!(
                        "import of {:?}: the plugin has no file {name}, {name}.ts or {name}.js \
                         beside {entry}",
                        import.specifier
                    )
                }
            };
            errors.push(ModuleError {
                file: file.clone(),
                error: SourceError {
                    reason: Reason::ModuleNotFound,
                    line: import.line,
                    column: import.column,
                    message: refusal,
                },
            });
        }
        match role {
            ModuleRole::Entry => linked.code = transpiled.code,
            ModuleRole::Imported => {
                linked.modules.insert(file, transpiled.code);
            }
        }
    }
    if errors.is_empty() {
        Ok(linked)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> impl FnMut(&str) -> Option<String> {
        let map: BTreeMap<String, String> = list
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn imports_are_resolved_with_or_without_an_extension() {
        let linked = link(
            "auth.ts",
            "import { verify } from \"./jwt\";\nimport * as b64 from \"./base64.js\";\n\
             export default { beforeRequest() { verify(b64); } };",
            files(&[
                ("jwt.ts", "import { decode } from \"./base64.js\";\nexport const verify = (x: unknown) => decode(x);"),
                ("base64.js", "export const decode = (x) => x;"),
                ("unused.ts", "export const never = 1;"),
            ]),
        )
        .unwrap();
        assert_eq!(
            linked.modules.keys().collect::<Vec<_>>(),
            ["base64.js", "jwt.ts"],
            "only what is imported, each once"
        );
        assert!(linked.modules["jwt.ts"].contains("decode(x)"));
        assert!(
            !linked.modules["jwt.ts"].contains("unknown"),
            "types stripped"
        );
        assert!(linked.code.contains("from \"./jwt\""), "{}", linked.code);
    }

    #[test]
    fn missing_files_and_paths_are_reported_where_they_are_imported() {
        let errors = link(
            "auth.ts",
            "import { a } from \"./lib\";\nexport default { a };",
            files(&[(
                "lib.ts",
                "\nexport { b } from \"./missing\";\nexport const a = 1;",
            )]),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].file, "lib.ts");
        assert_eq!(errors[0].error.reason, Reason::ModuleNotFound);
        assert_eq!((errors[0].error.line, errors[0].error.column), (2, 1));
        assert!(
            errors[0]
                .error
                .message
                .contains("no file missing, missing.ts or missing.js")
        );

        for specifier in [
            "../lib",
            "./dir/lib",
            "lib",
            "node:fs",
            "https://x.test/a.js",
        ] {
            let errors = link(
                "auth.ts",
                &format!("import {{ a }} from {specifier:?};\nexport default {{ a }};"),
                files(&[("lib.ts", "export const a = 1;")]),
            )
            .unwrap_err();
            assert_eq!(
                errors[0].error.reason,
                Reason::ImportNotSupported,
                "{specifier}"
            );
        }
    }

    #[test]
    fn imported_modules_need_no_default_export_but_their_errors_count() {
        let errors = link(
            "auth.ts",
            "import { a } from \"./lib\";\nexport default { a };",
            files(&[("lib.ts", "export const a = ;")]),
        )
        .unwrap_err();
        assert_eq!(errors[0].file, "lib.ts");
        assert_eq!(errors[0].error.reason, Reason::SyntaxError);
        assert!(
            errors[0].to_string().starts_with("lib.ts:1:"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn cycles_link_and_the_entry_cannot_be_imported() {
        let linked = link(
            "main.ts",
            "import { a } from \"./a\";\nexport default { a };",
            files(&[
                (
                    "a.ts",
                    "import { b } from \"./b\";\nexport const a = () => b;",
                ),
                (
                    "b.ts",
                    "import { a } from \"./a\";\nexport const b = () => a;",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(linked.modules.len(), 2);

        let errors = link(
            "main.ts",
            "import { a } from \"./a\";\nexport default { a };",
            files(&[("a.ts", "import m from \"./main\";\nexport const a = m;")]),
        )
        .unwrap_err();
        assert!(
            errors[0].error.message.contains("cannot be imported"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_hash_covers_every_module() {
        let one = link(
            "m.ts",
            "import \"./a\";\nexport default {};",
            files(&[("a.ts", "1;")]),
        );
        let two = link(
            "m.ts",
            "import \"./a\";\nexport default {};",
            files(&[("a.ts", "2;")]),
        );
        assert_ne!(one.unwrap().code_hash(), two.unwrap().code_hash());
    }
}
