//! The project's Helm chart (`templates/helm/dragonfly-lite/`), embedded in dfctl so that
//! `dfctl deploy helm` installs the chart that matches this binary, with no chart repository
//! and no checkout needed on the operator's machine.
//!
//! Invariant: [`FILES`] is exactly the chart directory; a unit test fails when a file is added
//! to or removed from the chart without being listed here.

use std::path::Path;

macro_rules! chart_file {
    ($path:literal) => {
        (
            $path,
            include_str!(concat!("../../templates/helm/dragonfly-lite/", $path)),
        )
    };
}

/// `(path inside the chart, content)`.
pub const FILES: &[(&str, &str)] = &[
    chart_file!(".helmignore"),
    chart_file!("Chart.yaml"),
    chart_file!("README.md"),
    chart_file!("values.schema.json"),
    chart_file!("values.yaml"),
    chart_file!("templates/NOTES.txt"),
    chart_file!("templates/_helpers.tpl"),
    chart_file!("templates/identity.yaml"),
    chart_file!("templates/ca-secret.yaml"),
    chart_file!("templates/peer.yaml"),
    chart_file!("templates/scheduler.yaml"),
    chart_file!("templates/seed.yaml"),
    chart_file!("templates/servicemonitor.yaml"),
];

/// The chart's directory name, as `helm` expects it (the chart's `name`).
pub const NAME: &str = "dragonfly-lite";

/// Writes the chart into `dir/dragonfly-lite/`, replacing what a previous run left there.
pub fn write(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    let chart = dir.join(NAME);
    if chart.exists() {
        std::fs::remove_dir_all(&chart)?;
    }
    for (path, content) in FILES {
        let file = chart.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::destination::write(
            &file,
            None,
            content.as_bytes(),
            crate::destination::Mode::New(0o644),
        )
        .map_err(std::io::Error::other)?;
    }
    Ok(chart)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("chart dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).expect("under base");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }

    /// The chart deploys the image `scripts/image` builds: the repository in `values.yaml`
    /// (which `dfctl deploy helm` defaults to as well) and the crate version as its tag.
    #[test]
    fn the_default_image_is_the_one_scripts_image_builds() {
        let file = |name: &str| {
            FILES
                .iter()
                .find(|(p, _)| *p == name)
                .map(|(_, text)| *text)
                .expect("chart file")
        };
        let app_version = format!("appVersion: \"{}\"", env!("CARGO_PKG_VERSION"));
        assert!(
            file("Chart.yaml").lines().any(|l| l == app_version),
            "Chart.yaml's appVersion is not the crate version ({app_version})"
        );
        let repo = crate::helm_values::HelmValuesOptions::default().image_repository;
        assert!(
            file("values.yaml").contains(&format!("  repository: {repo}\n")),
            "values.yaml's image.repository is not dfctl's default {repo}"
        );
    }

    #[test]
    fn every_chart_file_is_embedded() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/helm/dragonfly-lite");
        let mut on_disk = Vec::new();
        walk(&base, &base, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "list new chart files in helm_chart::FILES"
        );
    }

    #[test]
    fn written_chart_matches_the_embedded_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join(NAME).join("stale")).expect("stale dir");
        let chart = write(tmp.path()).expect("write");
        assert!(
            !chart.join("stale").exists(),
            "a previous run's leftovers are removed"
        );
        for (path, content) in FILES {
            assert_eq!(
                &std::fs::read_to_string(chart.join(path)).expect("file"),
                content
            );
        }
    }
}
