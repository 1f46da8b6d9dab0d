//! TypeScript to JavaScript with oxc: types are stripped, nothing is down-levelled
//! (QuickJS runs modern JavaScript), and the module shape a plugin must have is checked.
//! A module may import other files of its plugin (`./name`); [`super::modules`] finds and
//! links them.

use std::path::Path;

use oxc::allocator::Allocator;
use oxc::ast::ast::{ModuleDeclaration, Statement};
use oxc::codegen::Codegen;
use oxc::diagnostics::OxcDiagnostic;
use oxc::parser::Parser;
use oxc::semantic::SemanticBuilder;
use oxc::span::SourceType;
use oxc::transformer::{TransformOptions, Transformer};

use crate::condition::Reason;

/// Why a plugin's source did not compile, with a 1-based position in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceError {
    /// `SyntaxError`, `MissingDefaultExport`, `ImportNotSupported` or `ModuleNotFound`.
    pub reason: Reason,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// The compiler's message.
    pub message: String,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// What a module is to its plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleRole {
    /// The module the Plugin names: its default export has the hooks.
    Entry,
    /// A module another module of the plugin imports.
    Imported,
}

/// A module transpiled to JavaScript, with the files it imports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transpiled {
    /// The JavaScript.
    pub code: String,
    /// Its static imports of other files of the plugin (`./name`), in source order.
    pub imports: Vec<Import>,
}

/// A static import (or re-export) of another file of the plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    /// The specifier as written: `./name`.
    pub specifier: String,
    /// 1-based line of the import statement.
    pub line: u32,
    /// 1-based column of the import statement, in characters.
    pub column: u32,
}

/// Transpiles a plugin module to JavaScript, or says where and why it cannot.
///
/// Type-only imports (`import type { Context } from "weir"`) are erased and allowed. An
/// import left after stripping types must name another file of the plugin (`./name`,
/// without directories): there is no package, file system or network to load from. The
/// entry module must have a default export.
pub fn transpile(source: &str, role: ModuleRole) -> Result<Transpiled, Vec<SourceError>> {
    // A compiler bug on some odd input must not take the operator down with it.
    std::panic::catch_unwind(|| transpile_unguarded(source, role)).unwrap_or_else(|_| {
        Err(vec![SourceError {
            reason: Reason::SyntaxError,
            line: 1,
            column: 1,
            message: "the TypeScript compiler failed on this source".into(),
        }])
    })
}

fn transpile_unguarded(source: &str, role: ModuleRole) -> Result<Transpiled, Vec<SourceError>> {
    let allocator = Allocator::default();
    let source_type = SourceType::ts().with_module(true);
    let parsed = Parser::new(&allocator, source, source_type).parse();
    if parsed.panicked || !parsed.diagnostics.is_empty() {
        return Err(syntax_errors(source, parsed.diagnostics.iter()));
    }
    let mut program = parsed.program;

    let semantic = SemanticBuilder::new()
        .with_check_syntax_error(true)
        .with_enum_eval(true)
        .build(&program);
    if !semantic.diagnostics.is_empty() {
        return Err(syntax_errors(source, semantic.diagnostics.iter()));
    }

    let has_default_export = program.body.iter().any(|statement| {
        matches!(statement, Statement::ExportDefaultDeclaration(_))
            || matches!(statement, Statement::ExportNamedDeclaration(named)
                if named.specifiers.iter().any(|s| s.exported.name() == "default"))
            || matches!(statement, Statement::ExportFromDeclaration(from)
                if from.specifiers.iter().any(|s| s.exported.name() == "default"))
    });
    if role == ModuleRole::Entry && !has_default_export {
        return Err(vec![SourceError {
            reason: Reason::MissingDefaultExport,
            line: 1,
            column: 1,
            message: "the module must `export default` an object with hooks \
                      (onLoad, beforeRequest, afterResponse, onError)"
                .into(),
        }]);
    }

    let options = TransformOptions::default();
    let transformed = Transformer::new(&allocator, Path::new("plugin.ts"), &options)
        .build_with_scoping(semantic.semantic.into_scoping(), &mut program);
    if !transformed.diagnostics.is_empty() {
        return Err(syntax_errors(source, transformed.diagnostics.iter()));
    }

    let mut imports = Vec::new();
    let mut refused = Vec::new();
    for statement in &program.body {
        let (span, from) = match statement.as_module_declaration() {
            Some(ModuleDeclaration::ImportDeclaration(d)) => (d.span, d.source.value.as_str()),
            Some(ModuleDeclaration::ExportAllDeclaration(d)) => (d.span, d.source.value.as_str()),
            Some(ModuleDeclaration::ExportFromDeclaration(d)) => (d.span, d.source.value.as_str()),
            _ => continue,
        };
        let (line, column) = line_column(source, span.start);
        if super::modules::file_name(from).is_some() {
            imports.push(Import {
                specifier: from.to_owned(),
                line,
                column,
            });
        } else {
            refused.push(SourceError {
                reason: Reason::ImportNotSupported,
                line,
                column,
                message: format!(
                    "import of {from:?}: a plugin imports only other files of its own source \
                     (\"./name\", in the same ConfigMap or directory), not packages or paths; \
                     use ctx.services and ctx.crypto"
                ),
            });
        }
    }
    if !refused.is_empty() {
        return Err(refused);
    }

    Ok(Transpiled {
        code: Codegen::new().build(&program).code,
        imports,
    })
}

fn syntax_errors<'d>(
    source: &str,
    diagnostics: impl Iterator<Item = &'d OxcDiagnostic>,
) -> Vec<SourceError> {
    let errors: Vec<SourceError> = diagnostics
        .map(|diagnostic| {
            // Several labels point at the earlier and the offending site; the last (or the
            // primary) one is where the author must look.
            let label = diagnostic
                .labels
                .iter()
                .find(|l| l.primary())
                .or(diagnostic.labels.last());
            let offset = label.map_or(0, |label| label.offset());
            let (line, column) = line_column(source, offset);
            SourceError {
                reason: Reason::SyntaxError,
                line,
                column,
                message: diagnostic.message.to_string(),
            }
        })
        .collect();
    if errors.is_empty() {
        // The parser gave up without saying where.
        vec![SourceError {
            reason: Reason::SyntaxError,
            line: 1,
            column: 1,
            message: "the source could not be parsed".into(),
        }]
    } else {
        errors
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(source: &str, offset: u32) -> (u32, u32) {
    let offset = (offset as usize).min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_stripped_and_modern_syntax_is_kept() {
        let js = transpile(
            "import type { Context } from \"weir\";\n\
             interface Claims { sub: string }\n\
             enum Mode { On = 1 }\n\
             export default {\n\
               async beforeRequest(ctx: Context): Promise<void> {\n\
                 const claims = ctx.user as Claims | undefined;\n\
                 ctx.state.mode = Mode.On;\n\
                 ctx.state.sub = claims?.sub ?? \"anonymous\";\n\
               },\n\
             };\n",
            ModuleRole::Entry,
        )
        .unwrap()
        .code;
        assert!(!js.contains("interface"), "{js}");
        assert!(!js.contains(": Context"), "{js}");
        assert!(!js.contains("import"), "{js}");
        assert!(js.contains("async beforeRequest(ctx)"), "{js}");
        assert!(js.contains("claims?.sub ?? \"anonymous\""), "{js}");
        assert!(js.contains("export default"), "{js}");
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let errors = transpile(
            "export default {\n  beforeRequest(ctx) {\n    let x = ;\n  },\n};\n",
            ModuleRole::Entry,
        )
        .unwrap_err();
        assert_eq!(errors[0].reason, Reason::SyntaxError);
        assert_eq!((errors[0].line, errors[0].column), (3, 13), "{}", errors[0]);
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let errors = transpile(
            "// é\nconst s = \"é\"; let = 1;\nexport default {};\n",
            ModuleRole::Entry,
        )
        .unwrap_err();
        assert_eq!(errors[0].line, 2, "{}", errors[0]);
        assert_eq!(errors[0].column, 16, "{}", errors[0]);
    }

    #[test]
    fn semantic_errors_are_syntax_errors_too() {
        let errors = transpile(
            "let a = 1;\nlet a = 2;\nexport default {};\n",
            ModuleRole::Entry,
        )
        .unwrap_err();
        assert_eq!(errors[0].reason, Reason::SyntaxError);
        assert_eq!(errors[0].line, 2, "{}", errors[0]);
    }

    #[test]
    fn a_default_export_is_required() {
        let errors = transpile("export const hooks = {};\n", ModuleRole::Entry).unwrap_err();
        assert_eq!(errors[0].reason, Reason::MissingDefaultExport);
        assert!(
            transpile(
                "const hooks = {};\nexport { hooks as default };\n",
                ModuleRole::Entry
            )
            .is_ok()
        );
    }

    #[test]
    fn value_imports_are_refused_with_their_position() {
        let errors =
            transpile("// auth\nimport jwt from \"jsonwebtoken\";\nexport default { beforeRequest() { jwt; } };\n", ModuleRole::Entry)
                .unwrap_err();
        assert_eq!(errors[0].reason, Reason::ImportNotSupported);
        assert_eq!((errors[0].line, errors[0].column), (2, 1));
        assert!(errors[0].message.contains("jsonwebtoken"));

        let errors = transpile(
            "export * from \"../other\";\nexport default {};\n",
            ModuleRole::Entry,
        )
        .unwrap_err();
        assert_eq!(errors[0].reason, Reason::ImportNotSupported);
    }

    #[test]
    fn relative_imports_are_listed_and_type_imports_are_not() {
        let transpiled = transpile(
            "import type { Plugin } from \"weir\";\nimport type { Claims } from \"./types\";\n\
             import { verify } from \"./jwt\";\nexport { default } from \"./hooks.ts\";\n\
             export const check = (c: Claims) => verify(c);\n",
            ModuleRole::Entry,
        )
        .unwrap();
        let specifiers: Vec<&str> = transpiled
            .imports
            .iter()
            .map(|i| i.specifier.as_str())
            .collect();
        assert_eq!(specifiers, ["./jwt", "./hooks.ts"]);
        assert_eq!(
            (transpiled.imports[0].line, transpiled.imports[0].column),
            (3, 1)
        );
    }

    #[test]
    fn only_the_entry_needs_a_default_export() {
        assert!(transpile("export const a = 1;\n", ModuleRole::Imported).is_ok());
        let errors = transpile("export const a = 1;\n", ModuleRole::Entry).unwrap_err();
        assert_eq!(errors[0].reason, Reason::MissingDefaultExport);
    }
}
