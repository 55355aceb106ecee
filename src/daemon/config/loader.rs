//! Turns lexed items into a [`DaemonConfig`]: sections, the global context,
//! `&include`/`&merge`, `--dparam` (upstream: loadparm.c do_section(),
//! do_parameter(), set_dparams(); params.c include_config()).
//!
//! Stock semantics reproduced here:
//! * The "current defaults" (global parameters plus module parameters given
//!   in a global context) are copied into a module when its section is
//!   *first* opened.  A later `[global]` section, or module parameters given
//!   after an `&include`, therefore only affect modules opened afterwards --
//!   except that a *string* parameter still unset in a module at the end
//!   reads as the final global-context value (stock's accessors fall back to
//!   it), while an explicitly empty one stays empty.  Checked against stock
//!   rsync 3.5.0's module listing.
//! * A section whose name equals (case/blank-insensitively) an existing
//!   module's reopens that module; `[global]` in any case reopens the global
//!   context.  A module name may not contain `/`.
//! * `&include F` saves the current defaults, reads F starting in the global
//!   context, restores the defaults afterwards, and leaves the parser in the
//!   global context.  A directory reads its `*.conf` files in byte order, each
//!   starting from the same saved defaults.  Modules defined inside persist.
//! * `&merge F` reads F as if its text were inserted in place (a directory:
//!   its `*.inc` files, in order).
//! * Relative include paths are used as given, i.e. relative to the process's
//!   current directory, not to the including file (stock does not rebase).
//! * `--dparam` values are applied when the first global section ends (as
//!   the first module section starts), so modules inherit them; if the file
//!   defines no module they are applied at the end.
//! * In globals-only mode (stock's listener pass) reading stops at the first
//!   section header anywhere, and `&include` does not save/restore defaults.
//!
//! Not stock: nested includes of a file already being read are an error
//! (stock recurses until it runs out of file descriptors), nesting is bounded,
//! and everything stock merely logs and ignores is an error.

use std::path::{Path, PathBuf};

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use super::lexer::{Item, Lexer};
use super::table::{names_equal, set_global, set_local, Param};
use super::{ConfigError, DaemonConfig, GlobalConfig, ModuleConfig, ParseOptions, SyntaxError};

/// How deeply `&include`/`&merge` may nest.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 32;

/// Whether reading should go on (globals-only mode stops at a section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

pub(crate) struct Loader<'o> {
    opts: &'o ParseOptions,
    /// The current global settings and module defaults (stock's `Vars`).
    vars: GlobalConfig,
    modules: Vec<ModuleConfig>,
    /// The module being filled when not in a global context.
    current: usize,
    in_global: bool,
    /// Saved `vars` for `&include` (stock's `Vars_stack`).
    saved: Vec<GlobalConfig>,
    /// (dev, ino) of the files currently being read, outermost first.
    reading: Vec<(u64, u64)>,
    dparams_applied: bool,
}

fn err(file: &str, line: usize, kind: SyntaxError) -> ConfigError {
    ConfigError::Syntax {
        file: file.to_string(),
        line,
        kind,
    }
}

/// Parse one `--dparam` spec into (name, value) as stock does: split at the
/// first `=`, leading blanks of the value skipped.
pub(crate) fn split_dparam(spec: &str) -> Result<(&str, &str, Param), ConfigError> {
    let dperr = |kind| ConfigError::Dparam {
        spec: spec.to_string(),
        kind,
    };
    let (name, value) = spec
        .split_once('=')
        .ok_or_else(|| dperr(SyntaxError::MissingEquals(spec.to_string())))?;
    let value = value.trim_start_matches(super::lexer::is_c_space);
    let p = Param::lookup(name)
        .ok_or_else(|| dperr(SyntaxError::UnknownParameter(name.to_string())))?;
    Ok((name, value, p))
}

impl<'o> Loader<'o> {
    pub(crate) fn new(opts: &'o ParseOptions) -> Self {
        Loader {
            opts,
            vars: GlobalConfig::default(),
            modules: Vec::new(),
            current: 0,
            in_global: true,
            saved: Vec::new(),
            reading: Vec::new(),
            dparams_applied: false,
        }
    }

    pub(crate) fn finish(mut self) -> Result<DaemonConfig, ConfigError> {
        if !self.dparams_applied {
            self.apply_dparams()?;
        }
        for m in &mut self.modules {
            m.finish_strings(Some(&self.vars.defaults));
        }
        self.vars.finish_strings();
        self.vars.defaults.finish_strings(None);
        Ok(DaemonConfig {
            global: self.vars,
            modules: self.modules,
        })
    }

    fn apply_dparams(&mut self) -> Result<(), ConfigError> {
        self.dparams_applied = true;
        let opts = self.opts;
        for spec in &opts.dparams {
            let (name, value, p) = split_dparam(spec)?;
            set_global(p, &mut self.vars, value).map_err(|kind| ConfigError::Dparam {
                spec: spec.clone(),
                kind,
            })?;
            self.vars.params.push((name.to_string(), value.to_string()));
        }
        Ok(())
    }

    /// Read a file from disk (the top-level file or an included one).
    pub(crate) fn run_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        self.file(path).map(|_| ())
    }

    fn file(&mut self, path: &Path) -> Result<Flow, ConfigError> {
        let (bytes, meta) =
            super::open::read_config_file(path).map_err(|source| ConfigError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let id = (meta.dev(), meta.ino());
        if self.reading.contains(&id) {
            return Err(ConfigError::IncludeLoop {
                path: path.to_path_buf(),
            });
        }
        self.reading.push(id);
        let r = self.text(
            &String::from_utf8_lossy(&bytes),
            &path.display().to_string(),
            std::str::from_utf8(&bytes).is_err(),
        );
        self.reading.pop();
        r
    }

    /// Parse text that did not come from a file (the top level only).
    pub(crate) fn run_text(&mut self, text: &str, origin: &str) -> Result<(), ConfigError> {
        self.text(text, origin, false).map(|_| ())
    }

    fn text(&mut self, text: &str, origin: &str, had_bad_utf8: bool) -> Result<Flow, ConfigError> {
        for item in Lexer::new(text) {
            let item = match item {
                Ok(item) => item,
                Err((_, SyntaxError::UnterminatedSection(_) | SyntaxError::EmptySectionName))
                    if self.opts.globals_only =>
                {
                    return Ok(Flow::Stop);
                }
                Err((line, kind)) => return Err(err(origin, line, kind)),
            };
            if had_bad_utf8 && item_text_has_replacement(&item) {
                return Err(err(origin, item_line(&item), SyntaxError::NotUtf8));
            }
            match item {
                Item::Section { line, name } => {
                    if self.opts.globals_only {
                        return Ok(Flow::Stop);
                    }
                    self.section(&name).map_err(|e| match e {
                        SectionError::Syntax(kind) => err(origin, line, kind),
                        SectionError::Config(e) => e,
                    })?;
                }
                Item::Param { line, name, value } => {
                    self.param(&name, &value)
                        .map_err(|kind| err(origin, line, kind))?;
                }
                Item::Directive { line, name, value } => {
                    if self.directive(&name, &value, origin, line)? == Flow::Stop {
                        return Ok(Flow::Stop);
                    }
                }
            }
        }
        Ok(Flow::Continue)
    }

    fn section(&mut self, name: &str) -> Result<(), SectionError> {
        let is_global = names_equal(name, "global");
        if self.in_global && !is_global && self.modules.is_empty() && !self.dparams_applied {
            self.apply_dparams().map_err(SectionError::Config)?;
        }
        self.in_global = is_global;
        if is_global {
            return Ok(());
        }
        if name.contains('/') {
            return Err(SectionError::Syntax(SyntaxError::BadModuleName(
                name.to_string(),
            )));
        }
        self.current = match self
            .modules
            .iter()
            .rposition(|m| names_equal(&m.name, name))
        {
            Some(i) => i,
            None => {
                let mut m = self.vars.defaults.clone();
                m.name = name.to_string();
                m.params.clear();
                self.modules.push(m);
                self.modules.len() - 1
            }
        };
        Ok(())
    }

    fn param(&mut self, name: &str, value: &str) -> Result<(), SyntaxError> {
        let p =
            Param::lookup(name).ok_or_else(|| SyntaxError::UnknownParameter(name.to_string()))?;
        let raw = (name.to_string(), value.to_string());
        if self.in_global {
            set_global(p, &mut self.vars, value)?;
            self.vars.params.push(raw);
        } else {
            if p.is_global() {
                return Err(SyntaxError::GlobalInModule(p.label()));
            }
            let Some(m) = self.modules.get_mut(self.current) else {
                return Err(SyntaxError::GlobalInModule(p.label()));
            };
            set_local(p, m, value)?;
            m.params.push(raw);
        }
        Ok(())
    }

    fn directive(
        &mut self,
        name: &str,
        value: &str,
        origin: &str,
        line: usize,
    ) -> Result<Flow, ConfigError> {
        let manage_globals = if name.eq_ignore_ascii_case("&include") {
            true
        } else if name.eq_ignore_ascii_case("&merge") {
            false
        } else {
            return Err(err(
                origin,
                line,
                SyntaxError::UnknownDirective(name.to_string()),
            ));
        };
        if self.reading.len() >= MAX_INCLUDE_DEPTH {
            return Err(err(origin, line, SyntaxError::IncludeTooDeep));
        }
        // Push/pop only when sections are being processed (not globals-only).
        let manage_globals = manage_globals && !self.opts.globals_only;
        let target = Path::new(value);
        let include_err = |source| {
            err(
                origin,
                line,
                SyntaxError::Include {
                    path: target.to_path_buf(),
                    source,
                },
            )
        };
        let meta = std::fs::metadata(target).map_err(include_err)?;
        let files: Vec<PathBuf> = if meta.is_file() {
            vec![target.to_path_buf()]
        } else if meta.is_dir() {
            let suffix: &[u8] = if name.eq_ignore_ascii_case("&include") {
                b".conf"
            } else {
                b".inc"
            };
            let rd = std::fs::read_dir(target).map_err(include_err)?;
            let mut names: Vec<PathBuf> = Vec::new();
            for entry in rd {
                let entry = entry.map_err(|source| {
                    err(
                        origin,
                        line,
                        SyntaxError::Include {
                            path: target.to_path_buf(),
                            source,
                        },
                    )
                })?;
                if entry.file_name().as_bytes().ends_with(suffix) {
                    names.push(target.join(entry.file_name()));
                }
            }
            names.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
            names
        } else {
            return Err(err(
                origin,
                line,
                SyntaxError::IncludeNotFileOrDir(target.to_path_buf()),
            ));
        };
        if files.is_empty() {
            return Ok(Flow::Continue);
        }
        if manage_globals {
            self.saved.push(self.vars.clone());
            self.in_global = true;
        }
        let mut flow = Flow::Continue;
        let mut result = Ok(());
        for (i, f) in files.iter().enumerate() {
            if manage_globals && i > 0 {
                if let Some(v) = self.saved.last() {
                    self.vars = v.clone();
                }
                self.in_global = true;
            }
            match self.file(f) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => {
                    flow = Flow::Stop;
                    break;
                }
                Err(ConfigError::Open { path, source }) => {
                    result = Err(err(origin, line, SyntaxError::Include { path, source }));
                    break;
                }
                Err(ConfigError::IncludeLoop { path }) => {
                    result = Err(err(origin, line, SyntaxError::IncludeLoop(path)));
                    break;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if manage_globals {
            if let Some(v) = self.saved.pop() {
                self.vars = v;
            }
            self.in_global = true;
        }
        result.map(|()| flow)
    }
}

enum SectionError {
    Syntax(SyntaxError),
    Config(ConfigError),
}

fn item_line(item: &Item) -> usize {
    match item {
        Item::Section { line, .. } | Item::Param { line, .. } | Item::Directive { line, .. } => {
            *line
        }
    }
}

fn item_text_has_replacement(item: &Item) -> bool {
    let has = |s: &str| s.contains('\u{FFFD}');
    match item {
        Item::Section { name, .. } => has(name),
        Item::Param { name, value, .. } | Item::Directive { name, value, .. } => {
            has(name) || has(value)
        }
    }
}
