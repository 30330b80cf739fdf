//! The provider catalogue: every provider this service knows, in display order, whether it can
//! be used here, and the [`Provider`] of each one that users connect in the browser.

use std::sync::Arc;

use serde::Serialize;

use crate::providers::{Provider, ProviderKind};

/// A provider as `GET /api/v1/providers` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Provider)]
pub struct Listed {
    pub name: String,
    pub display_name: String,
    pub kind: ProviderKind,
    /// Usable on this server (configured, or simulated by the embedded sandbox).
    pub configured: bool,
    /// Served by the embedded sandbox.
    pub sandbox: bool,
}

#[derive(Default)]
pub struct Catalogue {
    /// Display order; disabled providers included (`configured: false`).
    listed: Vec<Listed>,
    connectable: Vec<Arc<dyn Provider>>,
}

impl Catalogue {
    /// Adds a provider users connect in the browser.
    pub fn add(&mut self, provider: Arc<dyn Provider>) {
        let info = provider.info();
        self.listed.push(Listed { name: info.name.clone(), display_name: info.display_name.clone(), kind: info.kind, configured: true, sandbox: info.sandbox });
        self.connectable.push(provider);
    }

    /// Lists a provider without a browser connection (Toss), or one that is disabled here.
    pub fn list(&mut self, listed: Listed) {
        self.listed.push(listed);
    }

    pub fn listing(&self) -> &[Listed] {
        &self.listed
    }

    pub fn providers(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.connectable.iter()
    }

    /// The connectable provider `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.connectable.iter().find(|p| p.info().name == name)
    }

    /// The catalogue entry `name`, usable or not.
    pub fn entry(&self, name: &str) -> Option<&Listed> {
        self.listed.iter().find(|l| l.name == name)
    }

    pub fn is_configured(&self, name: &str) -> bool {
        self.entry(name).is_some_and(|l| l.configured)
    }
}
