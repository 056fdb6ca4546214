//! A PostgreSQL and a Redis of one test's own that accept TLS only (plain connections to
//! PostgreSQL are rejected by `pg_hba.conf`; Redis has no plain port), with a certificate for
//! `localhost` from a CA the test made.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::certs::Issued;

pub struct TlsBackends {
    dir: PathBuf,
    pg_bin: PathBuf,
    pg_data: PathBuf,
    pg_port: u16,
    redis: Child,
    redis_port: u16,
    pub ca_file: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The newest PostgreSQL's binaries (`TRELLIS_PG_BIN`, or Debian's layout).
fn pg_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("TRELLIS_PG_BIN") {
        return bin.into();
    }
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (make test installs it)")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    PathBuf::from(format!("/usr/lib/postgresql/{}/bin", versions.last().expect("a PostgreSQL version")))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// PostgreSQL refuses to run as root: as root, its files belong to and it runs as `postgres`.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn give_to_postgres(path: &Path) {
    if is_root() {
        let status = Command::new("chown").arg("-R").arg("postgres").arg(path).status().unwrap();
        assert!(status.success(), "chown {}", path.display());
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsBackends {
    pub fn start(certs: &Issued) -> TlsBackends {
        let dir = std::env::temp_dir().join(format!("trellis-tls-backends-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca_file = write("ca.pem", &certs.ca_pem);
        let cert = write("server.pem", &certs.cert_pem);
        let key = write("server.key", &certs.key_pem);
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

        // Redis: a TLS port only.
        let redis_port = free_port();
        let redis = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&ca_file)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (make test installs it)");

        // PostgreSQL: TLS required on TCP.
        let pg_bin = pg_bin();
        let pg_data = dir.join("pgdata");
        std::fs::create_dir_all(&pg_data).unwrap();
        std::fs::set_permissions(&pg_data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        give_to_postgres(&pg_data);
        give_to_postgres(&key);
        let mut initdb = as_postgres(&pg_bin.join("initdb"));
        initdb.arg("-D").arg(&pg_data).args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync"]);
        run(initdb, "initdb");
        std::fs::write(
            pg_data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        let pg_port = free_port();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {pg_port} -k {} -c fsync=off -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            pg_data.display(),
            cert.display(),
            key.display()
        );
        let mut start = as_postgres(&pg_bin.join("pg_ctl"));
        start.arg("-D").arg(&pg_data).arg("-l").arg(pg_data.join("server.log")).args(["-w", "-t", "60", "start", "-o"]);
        start.arg(options);
        run(start, "pg_ctl start");

        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        TlsBackends { dir, pg_bin, pg_data, pg_port, redis, redis_port, ca_file }
    }

    /// The database as a managed service hands it out: TLS with the certificate verified.
    pub fn database_url(&self, sslmode: &str) -> String {
        format!("postgres://postgres@localhost:{}/postgres?sslmode={sslmode}", self.pg_port)
    }

    pub fn redis_url(&self) -> String {
        format!("rediss://localhost:{}/", self.redis_port)
    }
}

impl Drop for TlsBackends {
    fn drop(&mut self) {
        let _ = self.redis.kill();
        let _ = self.redis.wait();
        let mut stop = as_postgres(&self.pg_bin.join("pg_ctl"));
        stop.arg("-D").arg(&self.pg_data).args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
