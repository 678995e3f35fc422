//! Which host files a dynamically linked executable needs at run time: its program
//! interpreter (the dynamic loader) and the shared libraries of its DT_NEEDED entries,
//! followed transitively. Read from the ELF headers with goblin; nothing is executed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use goblin::elf::Elf;
use goblin::elf::header::{EM_AARCH64, EM_X86_64};

use crate::error::{Error, Result, io_error};

/// A CPU architecture the images can be built for, as read from an ELF header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The GOARCH-style name OCI configs use.
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Debian's multiarch directory name.
    fn multiarch(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-linux-gnu",
            Arch::Arm64 => "aarch64-linux-gnu",
        }
    }

    /// Where Debian's loader looks without an ld.so.cache, in its order; the first
    /// directory that holds a library is also where the image gets it.
    fn library_dirs(self) -> Vec<String> {
        let triple = self.multiarch();
        vec![
            format!("/lib/{triple}"),
            format!("/usr/lib/{triple}"),
            "/lib".to_owned(),
            "/usr/lib".to_owned(),
        ]
    }
}

/// The dynamic-linking facts of one ELF file.
#[derive(Debug, Clone)]
pub struct ElfInfo {
    pub arch: Arch,
    /// PT_INTERP, absent for static executables.
    pub interpreter: Option<String>,
    /// DT_NEEDED sonames.
    pub needed: Vec<String>,
}

/// Parses the ELF headers of `path`.
pub fn inspect(path: &Path) -> Result<ElfInfo> {
    let bytes = std::fs::read(path).map_err(io_error("reading", path))?;
    let elf = Elf::parse(&bytes).map_err(|e| Error::Elf {
        path: path.to_owned(),
        reason: format!("not a readable ELF file: {e}"),
    })?;
    let arch = match elf.header.e_machine {
        EM_X86_64 => Arch::Amd64,
        EM_AARCH64 => Arch::Arm64,
        other => {
            return Err(Error::Elf {
                path: path.to_owned(),
                reason: format!("unsupported ELF machine {other}"),
            });
        }
    };
    if !elf.runpaths.is_empty() || !elf.rpaths.is_empty() {
        // The image only mirrors the default search path.
        return Err(Error::Elf {
            path: path.to_owned(),
            reason: "has an RPATH/RUNPATH, which the image does not reproduce".to_owned(),
        });
    }
    Ok(ElfInfo {
        arch,
        interpreter: elf.interpreter.map(str::to_owned),
        needed: elf.libraries.iter().map(|s| (*s).to_owned()).collect(),
    })
}

/// A host file the image must carry for its executables to start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuntimeFile {
    /// Absolute path inside the image (where the loader will look).
    pub image_path: String,
    /// The file on the host (symlinks are followed when it is read).
    pub host_path: PathBuf,
    /// The dynamic loader (executable) rather than a library.
    pub loader: bool,
}

/// The loader and all shared libraries `executables` need, each once, sorted by image
/// path. Static executables contribute nothing.
pub fn runtime_files(executables: &[&Path]) -> Result<Vec<RuntimeFile>> {
    let mut found: BTreeMap<String, RuntimeFile> = BTreeMap::new();
    for exe in executables {
        let info = inspect(exe)?;
        let Some(interpreter) = &info.interpreter else {
            continue;
        };
        found.insert(
            interpreter.clone(),
            RuntimeFile {
                image_path: interpreter.clone(),
                host_path: PathBuf::from(interpreter),
                loader: true,
            },
        );
        // The loader satisfies its own soname (libc lists it as DT_NEEDED).
        let loader_name = Path::new(interpreter)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let dirs = info.arch.library_dirs();
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<(PathBuf, String)> = info
            .needed
            .iter()
            .map(|n| (exe.to_path_buf(), n.clone()))
            .collect();
        while let Some((wanted_by, soname)) = queue.pop_front() {
            if Some(&soname) == loader_name.as_ref() || !seen.insert(soname.clone()) {
                continue;
            }
            let Some(dir) = dirs.iter().find(|d| Path::new(d).join(&soname).exists()) else {
                return Err(Error::LibraryNotFound {
                    binary: wanted_by,
                    library: soname,
                    searched: dirs.join(", "),
                });
            };
            let host_path = Path::new(dir).join(&soname);
            let lib = inspect(&host_path)?;
            queue.extend(lib.needed.into_iter().map(|n| (host_path.clone(), n)));
            let image_path = format!("{dir}/{soname}");
            found.insert(
                image_path.clone(),
                RuntimeFile {
                    image_path,
                    host_path,
                    loader: false,
                },
            );
        }
    }
    Ok(found.into_values().collect())
}
