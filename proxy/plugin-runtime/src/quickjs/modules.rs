//! The module loader of an isolate: a plugin's modules import each other by file name
//! (`./jwt`), resolved as the compiler resolved them ([`weir_crds::compile::modules`]),
//! from the bundle's modules only: there is no file system or network to load from.

use std::collections::BTreeMap;
use std::sync::Arc;

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{Ctx, Error, Module};

/// The modules of one plugin version, shared by its isolates.
pub(super) struct PluginModules(pub(super) Arc<BTreeMap<String, String>>);

impl Resolver for PluginModules {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        weir_crds::compile::modules::resolve(name, |file| self.0.contains_key(file)).ok_or_else(
            || {
                Error::new_resolving_message(
                    base,
                    name,
                    "a plugin imports only its own files (\"./name\") that the compiler linked",
                )
            },
        )
    }
}

impl Loader for PluginModules {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        let code = self.0.get(name).ok_or_else(|| Error::new_loading(name))?;
        Module::declare(ctx.clone(), name, code.as_str())
    }
}
