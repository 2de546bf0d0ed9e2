//! What the container and Kubernetes deployment rely on, against the real cluster and proxy: a
//! config mounted the way Kubernetes mounts a ConfigMap is reloaded when the `..data` symlink is
//! swapped; secrets given as `*_file` / `*_env` keys load, are named in errors, and reload.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::ops::{config_text, ConfigFile};
use common::{eventually, Cluster, TestProxy};
use mysql_async::prelude::*;

/// A directory laid out like a mounted ConfigMap: `rwsplit.toml -> ..data/rwsplit.toml`,
/// `..data -> ..<timestamp>/`. Updates write a new timestamped directory and rename a new
/// `..data` symlink over the old one; `rwsplit.toml` itself is never written.
struct ConfigMapDir {
    dir: PathBuf,
    generation: u32,
}

impl ConfigMapDir {
    fn new(tag: &str, text: &str) -> ConfigMapDir {
        let dir = std::env::temp_dir().join(format!("rwsplit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut map = ConfigMapDir { dir, generation: 0 };
        map.update(text);
        symlink("..data/rwsplit.toml", map.path()).unwrap();
        map
    }

    fn path(&self) -> PathBuf {
        self.dir.join("rwsplit.toml")
    }

    fn update(&mut self, text: &str) {
        self.generation += 1;
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        let stamp = format!("..2026_12_05_03_00_0{}.{}", self.generation, std::process::id());
        std::fs::create_dir(self.dir.join(&stamp)).unwrap();
        std::fs::write(self.dir.join(&stamp).join("rwsplit.toml"), text).unwrap();
        symlink(&stamp, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

impl Drop for ConfigMapDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(path: &Path, watch_file: bool) -> rwsplit::app::Handle {
    let config = rwsplit::config::Config::load(path).expect("config loads");
    let options = rwsplit::app::Options { config_path: Some(path.to_path_buf()), watch_file, log_filter: None };
    rwsplit::app::start_with(config, options).await.expect("proxy starts")
}

#[tokio::test]
async fn a_configmap_symlink_swap_is_reloaded_on_its_own() {
    let cluster = Cluster::shared().await;
    let mut map = ConfigMapDir::new("deploy-configmap", &config_text(&cluster, &[], &[], ""));
    let handle = start(&map.path(), true).await;
    map.update(&config_text(&cluster, &[1, 1, 4], &[], "[stats]\ndigests = 7\n"));
    let followed = eventually(Duration::from_secs(10), || async {
        handle.topology().nodes[2].config.weight == 4 && handle.metrics().digests.capacity() == 7
    })
    .await;
    assert!(followed, "the ConfigMap update (..data swap) was applied");
    handle.shutdown().await;
}

/// The cluster's config text with the app and monitor passwords from `app` and `monitor`, the
/// backend password plain and the admin password from `$var`.
fn secret_config(cluster: &Cluster, app: &Path, monitor: &Path, var: &str) -> String {
    let (app, monitor) = (app.display(), monitor.display());
    config_text(cluster, &[], &[], "")
        .replace(
            "[[users]]\nname = \"app\"\npassword = \"app\"\n",
            &format!("[[users]]\nname = \"app\"\npassword_file = \"{app}\"\nbackend_password = \"app\"\n"),
        )
        .replace(
            "user = \"monitor\"\npassword = \"monitor\"\n",
            &format!("user = \"monitor\"\npassword_file = \"{monitor}\"\n"),
        )
        .replace("user = \"admin\"\npassword = \"admin\"\n", &format!("user = \"admin\"\npassword_env = \"{var}\"\n"))
}

async fn login(proxy: &TestProxy, password: &str) -> Result<(), mysql_async::Error> {
    let opts = mysql_async::OptsBuilder::from_opts(proxy.opts(None)).pass(Some(password));
    let mut conn = mysql_async::Conn::new(opts).await?;
    conn.query_drop("SELECT 1").await?;
    conn.disconnect().await
}

#[tokio::test]
async fn secrets_from_files_and_env_load_and_reload() {
    let cluster = Cluster::shared().await;
    // The tests cannot set variables (process-global); one the test environment always has serves.
    let var = "RWSPLIT_CLUSTER_DIR";
    let var_value = std::env::var(var).expect("the cluster environment is loaded");
    let file = ConfigFile::new("deploy-secrets", "");
    let secret = file.path.with_file_name("app-password");
    let monitor = file.path.with_file_name("monitor-password");
    std::fs::write(&secret, "app\n").unwrap();
    std::fs::write(&monitor, "monitor\r\n").unwrap();
    file.replace(&secret_config(&cluster, &secret, &monitor, var));

    let config = file.config();
    assert_eq!(config.users[0].password.as_deref(), Some("app"), "one trailing newline removed");
    assert_eq!(config.monitor.password, "monitor");
    assert_eq!(config.admin.password, var_value);
    let shown = toml::to_string(&config).unwrap();
    assert!(shown.contains("password_file") && shown.contains("password = \"<redacted>\""), "{shown}");

    let handle = start(&file.path, false).await;
    let proxy = TestProxy { handle, cluster: cluster.clone() };
    login(&proxy, "app").await.expect("login with the password from the file");

    // Rotation: the file changes, a reload reads it again.
    std::fs::write(&secret, "rotated").unwrap();
    let changes = proxy.handle.reload().await.unwrap().unwrap();
    assert!(!changes.is_empty(), "{changes:?}");
    login(&proxy, "rotated").await.expect("login with the rotated password");
    assert!(login(&proxy, "app").await.is_err(), "the old password no longer works");

    // Errors name the key and the file or variable, never the secret.
    std::fs::remove_file(&secret).unwrap();
    let err = proxy.handle.reload().await.unwrap().unwrap_err();
    assert!(err.contains("users[0].password_file") && err.contains("app-password"), "{err}");
    std::fs::write(&secret, "rotated").unwrap();
    let unset = "RWSPLIT_DEPLOY_TEST_UNSET_VARIABLE";
    file.replace(&secret_config(&cluster, &secret, &monitor, unset));
    let err = proxy.handle.reload().await.unwrap().unwrap_err();
    assert!(err.contains("admin.password_env") && err.contains(unset), "{err}");
    let text = secret_config(&cluster, &secret, &monitor, var);
    file.replace(&text.replace("backend_password = \"app\"", "backend_password = \"app\"\npassword = \"x\""));
    let err = proxy.handle.reload().await.unwrap().unwrap_err();
    assert!(err.contains("users[0].password_file") && err.contains("only one of"), "{err}");
    file.replace(&text.replace("[admin]\nuser = \"admin\"\n", "[admin]\nuser = \"admin\"\npassword = \"admin\"\n"));
    let err = proxy.handle.reload().await.unwrap().unwrap_err();
    assert!(err.contains("admin.password_env") && err.contains("only one of"), "{err}");
    login(&proxy, "rotated").await.expect("the running config stays after rejected reloads");
    proxy.handle.shutdown().await;
}
