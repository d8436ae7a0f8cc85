//! Why a file was not edited: [`EditError`], with the source and span to show.

use std::sync::Arc;

use miette::{NamedSource, SourceSpan};
use rnix::TextRange;

use super::Limit;

/// Why a file was not edited. Each variant carries the source and the span to
/// show; nothing was changed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EditError {
    #[error("the file does not parse as Nix: {message}")]
    #[diagnostic(
        code(vfio::nixedit::parse),
        help("fix the syntax error first (`nix-instantiate --parse FILE` shows it too); nothing was changed")
    )]
    Parse {
        message: String,
        #[source_code]
        src: Arc<NamedSource<String>>,
        #[label("here")]
        span: SourceSpan,
    },
    #[error("{message}")]
    #[diagnostic(
        code(vfio::nixedit::limit),
        help("write the file the way a host file usually is (shallower, with spaces between names and operators); nothing was read further")
    )]
    Limit {
        limit: Limit,
        message: String,
        #[source_code]
        src: Arc<NamedSource<String>>,
        #[label("here")]
        span: SourceSpan,
    },
    #[error("the file is not an attribute set (or a function returning one)")]
    #[diagnostic(
        code(vfio::nixedit::top),
        help(
            "a host file looks like `{{ config, pkgs, ... }}: {{ … }}`; add the settings by hand"
        )
    )]
    TopNotAttrSet {
        #[source_code]
        src: Arc<NamedSource<String>>,
        #[label("this is not an attribute set")]
        span: SourceSpan,
    },
    #[error("`{path}` is {found}, not a literal attribute set, so it cannot be edited safely")]
    #[diagnostic(
        code(vfio::nixedit::not_literal),
        help("make `{path}` a plain `{{ … }}` set, or write these settings inside it yourself: {wanted} (nothing was changed)")
    )]
    NotLiteral {
        path: String,
        found: String,
        wanted: String,
        #[source_code]
        src: Arc<NamedSource<String>>,
        #[label("{found}")]
        span: SourceSpan,
    },
    #[error("`{path}` is bound by `inherit`, so it cannot be edited here")]
    #[diagnostic(
        code(vfio::nixedit::inherit),
        help("edit the set it is inherited from, or replace the inherit with `{path} = {{ … }};`; nothing was changed")
    )]
    Inherited {
        path: String,
        #[source_code]
        src: Arc<NamedSource<String>>,
        #[label("inherited here")]
        span: SourceSpan,
    },
    #[error("`{path}` is not defined in this file, and there is no `{parent}` to add it to")]
    #[diagnostic(
        code(vfio::nixedit::missing),
        help("add `{path} = {{ }};` to the file (or pass the name of a VM that it defines), then run again; nothing was changed")
    )]
    Missing {
        path: String,
        parent: String,
        #[source_code]
        src: Arc<NamedSource<String>>,
        #[label("searched this set")]
        span: SourceSpan,
    },
    #[error("editing `{path}` produced text that does not parse; the file was not changed")]
    #[diagnostic(
        code(vfio::nixedit::internal),
        help("this is a bug in vfio-helper; please report it with the file")
    )]
    Internal {
        path: String,
        #[source_code]
        src: Arc<NamedSource<String>>,
        #[label("while editing here")]
        span: SourceSpan,
    },
}

impl EditError {
    /// Replaces the file name shown with the source.
    pub fn with_file_name(mut self, name: &str) -> EditError {
        let (src, _) = self.shown_mut();
        *src = Arc::new(NamedSource::new(name, src.inner().clone()));
        self
    }

    /// The source shown and the span marked in it (every variant has both).
    pub(super) fn shown_mut(&mut self) -> (&mut Arc<NamedSource<String>>, &mut SourceSpan) {
        match self {
            EditError::Parse { src, span, .. }
            | EditError::Limit { src, span, .. }
            | EditError::TopNotAttrSet { src, span }
            | EditError::NotLiteral { src, span, .. }
            | EditError::Inherited { src, span, .. }
            | EditError::Missing { src, span, .. }
            | EditError::Internal { src, span, .. } => (src, span),
        }
    }

    /// The byte span the error points at: the one its label marks (each
    /// variant has one).
    pub fn span(&self) -> SourceSpan {
        miette::Diagnostic::labels(self)
            .and_then(|mut labels| labels.next())
            .map_or_else(|| SourceSpan::from(0..0), |label| *label.inner())
    }
}

/// The first `max` bytes of `text` (fewer, to end on a character).
pub(super) fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub(super) fn named(source: &str) -> Arc<NamedSource<String>> {
    Arc::new(NamedSource::new("host.nix", source.to_string()))
}

pub(super) fn span_of(range: TextRange) -> SourceSpan {
    let start = usize::from(range.start());
    SourceSpan::new(start.into(), usize::from(range.end()) - start)
}
