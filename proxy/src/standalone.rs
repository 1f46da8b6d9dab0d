//! Standalone mode: the same Route, Plugin, ConfigMap and Secret manifests as in a
//! cluster, read from a directory, compiled with `weir-crds`, and compiled again whenever
//! a file changes.
//!
//! With no API server to refuse a bad file and no status to report it on, a file that
//! does not parse, or holds an object the compiler rejects as invalid, is reported in the
//! log (file, object, field) and its last good version keeps serving. Problems that are
//! not the file's fault (a missing plugin, a missing Secret) are logged and handled as in
//! a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use thiserror::Error;
use weir_crds::compile::report::ObjectKind;
use weir_crds::compile::{Compilation, ObjectRef};
use weir_crds::condition::Reason;
use weir_crds::manifest::{Document, Manifests, Object, parse};
use weir_crds::snapshot::Snapshot;

use crate::gateway::Gateway;

/// Changes arriving within this window are compiled together.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The configuration directory cannot be used at all.
#[derive(Debug, Error)]
#[error("config directory {dir}: {message}")]
pub struct ConfigDirError {
    /// The directory.
    pub dir: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// A configuration directory and what was last good in each of its files.
pub struct ConfigDir {
    dir: PathBuf,
    last_good: BTreeMap<PathBuf, Vec<Object>>,
    previous: Option<Snapshot>,
}

impl ConfigDir {
    /// A directory not read yet.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            last_good: BTreeMap::new(),
            previous: None,
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Reads and compiles the directory, logging every problem with its file, object and
    /// field. Fails only when the directory itself cannot be read.
    pub fn compile(&mut self) -> Result<Snapshot, ConfigDirError> {
        let files = manifest_files(&self.dir).map_err(|message| ConfigDirError {
            dir: self.dir.clone(),
            message,
        })?;
        let mut fresh: BTreeMap<PathBuf, Vec<Object>> = BTreeMap::new();
        let mut broken: BTreeSet<PathBuf> = BTreeSet::new();
        for file in files {
            let (objects, errors) = read_file(&file);
            if errors.is_empty() {
                fresh.insert(file, objects);
            } else {
                for error in errors {
                    tracing::warn!(file = %file.display(), "{error}; the file's last good version keeps serving");
                }
                broken.insert(file);
            }
        }

        // Compile; files holding an object the compiler finds invalid count as broken too,
        // and the compile runs again with their last good versions.
        let (mut compilation, manifests) = loop {
            let manifests = self.assemble(&fresh, &broken, |duplicate| {
                tracing::warn!("{duplicate}");
            });
            let mut inputs = manifests.inputs();
            inputs.previous = self.previous.as_ref();
            let compilation = weir_crds::compile(&inputs);
            let newly_broken: Vec<PathBuf> = compilation
                .reports
                .iter()
                .filter(|report| report.is_invalid())
                .filter_map(|report| file_of(&fresh, &report.object))
                .filter(|file| self.last_good.contains_key(file) && !broken.contains(file))
                .collect();
            if newly_broken.is_empty() {
                break (compilation, manifests);
            }
            for file in newly_broken {
                tracing::warn!(file = %file.display(), "the file has an invalid object; its last good version keeps serving");
                broken.insert(file);
            }
        };
        for report in &compilation.reports {
            let file = file_of(&fresh, &report.object);
            for diagnostic in &report.diagnostics {
                tracing::warn!(
                    file = %file.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default(),
                    object = %report.object,
                    field = %diagnostic.field,
                    reason = %diagnostic.reason,
                    "{}",
                    diagnostic.message
                );
            }
        }
        for unattached in unattached_http_routes(&manifests, &compilation) {
            tracing::warn!("{unattached}");
        }
        for (file, objects) in fresh {
            if !broken.contains(&file) {
                self.last_good.insert(file, objects);
            }
        }
        // Files that were deleted no longer contribute.
        let present: BTreeSet<PathBuf> = manifest_files(&self.dir)
            .unwrap_or_default()
            .into_iter()
            .collect();
        self.last_good.retain(|file, _| present.contains(file));

        let snapshot = std::mem::replace(&mut compilation.snapshot, Snapshot::empty());
        self.previous = Some(snapshot.clone());
        Ok(snapshot)
    }

    /// The objects to compile: every readable file's, and the last good ones of broken files.
    /// An object defined twice keeps its first definition; `duplicate` hears of the others.
    fn assemble(
        &self,
        fresh: &BTreeMap<PathBuf, Vec<Object>>,
        broken: &BTreeSet<PathBuf>,
        mut duplicate: impl FnMut(String),
    ) -> Manifests {
        let mut manifests = Manifests::default();
        let mut seen: BTreeMap<_, PathBuf> = BTreeMap::new();
        let files = fresh
            .iter()
            .filter(|(file, _)| !broken.contains(*file))
            .chain(
                self.last_good
                    .iter()
                    .filter(|(file, _)| broken.contains(*file)),
            );
        for (file, objects) in files {
            for object in objects {
                let key = object_key(object);
                if let Some(first) = seen.get(&key) {
                    duplicate(format!(
                        "{}: {} {}/{}: also defined in {}; that definition is used",
                        file.display(),
                        key.0,
                        key.1,
                        key.2,
                        first.display()
                    ));
                    continue;
                }
                seen.insert(key, file.clone());
                manifests.add(object.clone());
            }
        }
        manifests
    }
}

/// `*.yaml` and `*.yml` files under `dir`, sorted, hidden ones left out.
fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries =
            std::fs::read_dir(&current).map_err(|e| format!("{}: {e}", current.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e == "yaml" || e == "yml")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The objects of a file's documents that parse, and what is wrong with the others.
fn read_file(file: &Path) -> (Vec<Object>, Vec<String>) {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => return (Vec::new(), vec![format!("cannot read: {e}")]),
    };
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for document in parse(&text) {
        match document {
            Ok(Document::Object(object)) => objects.push(object),
            Ok(Document::Ignored { kind }) if !kind.is_empty() => {
                tracing::debug!(file = %file.display(), "ignoring a {kind}");
            }
            Ok(Document::Ignored { .. }) => {}
            Err(error) => errors.push(error.to_string()),
        }
    }
    (objects, errors)
}

/// How `weir-proxy check` compiles.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Whether Routes may use URL backends (standalone: yes; a cluster install: no).
    pub allow_url_backends: bool,
    /// Whether the Services and TLS Secrets that Routes name live elsewhere (in the
    /// cluster), so that one missing from the directory is not a problem.
    pub refs_in_cluster: bool,
}

/// What `weir-proxy check DIR` finds in a directory of manifests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// One line per document that does not parse (`file: document N ...`) and per
    /// compiler diagnostic (`file: Kind namespace/name: field: message`), in file order.
    pub problems: Vec<String>,
    /// Lines of the same form for what is served without a part it names (an Ingress
    /// annotation weir does not map).
    pub warnings: Vec<String>,
}

/// Checks a directory of manifests. Fails only when the directory itself cannot be read.
pub fn check(dir: &Path, options: &CheckOptions) -> Result<Checked, ConfigDirError> {
    let files = manifest_files(dir).map_err(|message| ConfigDirError {
        dir: dir.to_owned(),
        message,
    })?;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut fresh = BTreeMap::new();
    for file in files {
        let (objects, errors) = read_file(&file);
        problems.extend(
            errors
                .into_iter()
                .map(|error| format!("{}: {error}", file.display())),
        );
        fresh.insert(file, objects);
    }
    let config = ConfigDir::new(dir.to_owned());
    let manifests = config.assemble(&fresh, &BTreeSet::new(), |duplicate| {
        problems.push(duplicate)
    });
    let mut inputs = manifests.inputs();
    inputs.options.allow_url_backends = options.allow_url_backends;
    let compilation = weir_crds::compile(&inputs);
    let elsewhere = |reason: Reason| {
        options.refs_in_cluster
            && matches!(reason, Reason::BackendNotFound | Reason::SecretNotFound)
    };
    for report in &compilation.reports {
        let file = file_of(&fresh, &report.object);
        let file = file.as_deref().map(Path::display);
        for diagnostic in report.diagnostics.iter().filter(|d| !elsewhere(d.reason)) {
            let line = match &file {
                Some(file) => format!("{file}: {}: {diagnostic}", report.object),
                None => format!("{}: {diagnostic}", report.object),
            };
            if diagnostic.reason.is_warning() || diagnostic.reason.is_note() {
                warnings.push(line);
            } else {
                problems.push(line);
            }
        }
    }
    warnings.extend(unattached_http_routes(&manifests, &compilation));
    Ok(Checked { problems, warnings })
}

/// A line per HTTPRoute that names no Gateway of weir's (a Gateway whose GatewayClass has
/// weir's `controllerName`): in a cluster another controller may serve it, but in a
/// directory weir serves alone, it is most likely a mistake.
fn unattached_http_routes(manifests: &Manifests, compilation: &Compilation) -> Vec<String> {
    manifests
        .http_routes
        .iter()
        .map(|route| ObjectRef {
            kind: ObjectKind::HTTPRoute,
            namespace: route
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| weir_crds::compile::DEFAULT_NAMESPACE.to_owned()),
            name: route.metadata.name.clone().unwrap_or_default(),
        })
        .filter(|route| !compilation.gateway_api.parents.contains_key(route))
        .map(|route| {
            format!(
                "{route}: names no Gateway weir serves (of a GatewayClass with controllerName \
                 {}); not served",
                weir_crds::compile::GATEWAY_CONTROLLER
            )
        })
        .collect()
}

fn object_key(object: &Object) -> (&'static str, String, String) {
    let (kind, meta) = match object {
        Object::Route(o) => ("Route", &o.metadata),
        Object::Plugin(o) => ("Plugin", &o.metadata),
        Object::ConfigMap(o) => ("ConfigMap", &o.metadata),
        Object::Secret(o) => ("Secret", &o.metadata),
        Object::Service(o) => ("Service", &o.metadata),
        Object::EndpointSlice(o) => ("EndpointSlice", &o.metadata),
        Object::Ingress(o) => ("Ingress", &o.metadata),
        Object::IngressClass(o) => ("IngressClass", &o.metadata),
        Object::GatewayClass(o) => ("GatewayClass", &o.metadata),
        Object::Gateway(o) => ("Gateway", &o.metadata),
        Object::HTTPRoute(o) => ("HTTPRoute", &o.metadata),
        Object::ReferenceGrant(o) => ("ReferenceGrant", &o.metadata),
        Object::Namespace(o) => ("Namespace", &o.metadata),
    };
    let namespace = meta
        .namespace
        .clone()
        .unwrap_or_else(|| weir_crds::compile::DEFAULT_NAMESPACE.to_owned());
    (kind, namespace, meta.name.clone().unwrap_or_default())
}

fn file_of(files: &BTreeMap<PathBuf, Vec<Object>>, object: &ObjectRef) -> Option<PathBuf> {
    let kind = object.kind.to_string();
    files.iter().find_map(|(file, objects)| {
        objects
            .iter()
            .any(|o| {
                let (k, ns, n) = object_key(o);
                k == kind && ns == object.namespace && n == object.name
            })
            .then(|| file.clone())
    })
}

/// Watches a configuration directory for changes. Made before the first compile, so no
/// change between that compile and the watch loop is missed.
pub struct DirWatch {
    config: ConfigDir,
    // Kept alive for as long as events are wanted.
    _watcher: notify::RecommendedWatcher,
    changes: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl DirWatch {
    /// Starts watching `config`'s directory.
    pub fn new(config: ConfigDir) -> Result<Self, ConfigDirError> {
        let (tx, changes) = tokio::sync::mpsc::unbounded_channel();
        let error = |e: notify::Error| ConfigDirError {
            dir: config.path().to_owned(),
            message: format!("cannot watch for changes: {e}"),
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            })
            .map_err(error)?;
        watcher
            .watch(config.path(), RecursiveMode::Recursive)
            .map_err(error)?;
        Ok(Self {
            config,
            _watcher: watcher,
            changes,
        })
    }

    /// Compiles the directory now.
    pub fn compile(&mut self) -> Result<Snapshot, ConfigDirError> {
        self.config.compile()
    }

    /// Recompiles and applies on every change until the process ends.
    pub async fn run(mut self, gateway: Arc<Gateway>) {
        while self.changes.recv().await.is_some() {
            // Editors write files in several steps: wait for the burst to end.
            tokio::time::sleep(DEBOUNCE).await;
            while self.changes.try_recv().is_ok() {}
            match self.config.compile() {
                Ok(snapshot) => {
                    let applied = gateway.apply_local(&snapshot).await;
                    tracing::info!(version = applied.version, "configuration reloaded");
                }
                Err(e) => tracing::error!("{e}; the last good config keeps serving"),
            }
        }
    }
}
