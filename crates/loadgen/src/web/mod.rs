//! The web UI, Locust's web mode: a driver of the engine like the headless CLI. It serves a
//! form (users, spawn rate, host, run time), Locust's tabs (statistics, charts, failures,
//! exceptions, downloads) and ours (jobs, findings, a capacity search), Locust's web API for the
//! scripts written against it, and our JSON API under `/api`. It listens on loopback unless
//! told otherwise.

mod base_path;
mod capacity;
mod guard;
mod locust_api;
pub mod logs;
mod page;
mod routes;
mod session;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Mutex;

use crate::config::RunConfig;
use crate::exit_code::EXIT_OK;
use crate::report::Report;
use crate::shutdown::{RunReports, after_first, exit_on_next};

pub use guard::check_exposure;
pub use session::{Session, SwarmRequest};

/// How the UI is served.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Address and port.
    pub listen: SocketAddr,
    /// Start a run at once with the configuration's values.
    pub autostart: bool,
    /// Quit this long after the run ends.
    pub autoquit: Option<Duration>,
    /// Let the form pick user classes.
    pub class_picker: bool,
    /// `USER:PASSWORD` for basic authentication.
    pub auth: Option<String>,
    /// Names the `Host` header may give besides IP addresses and `localhost`
    /// (`--web-allowed-host`).
    pub allowed_hosts: Vec<String>,
    /// Listen beyond loopback without `auth` (`--web-insecure-no-auth`).
    pub insecure_no_auth: bool,
    /// Serve over https with this certificate and key (`--tls-cert`, `--tls-key`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Serve under this path (`--web-base-path /loadgen`; empty: at `/`).
    pub base_path: String,
}

impl WebSettings {
    /// The page's URL on `addr`: https with --tls-cert, under --web-base-path (then `BASE/`).
    pub fn page_url(&self, addr: SocketAddr) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        if self.base_path.is_empty() {
            format!("{scheme}://{addr}")
        } else {
            format!("{scheme}://{addr}{}/", self.base_path)
        }
    }
}

/// A UI being served.
pub struct WebUi {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its session (for a caller that also steers it).
    pub session: Arc<Mutex<Session>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl WebUi {
    /// Binds and serves the UI for runs shaped like `template` (its values fill the form).
    pub async fn start(template: RunConfig, settings: &WebSettings) -> anyhow::Result<Self> {
        Self::start_on(template, settings, None).await
    }

    /// As [`WebUi::start`], the runs going to the workers of `master` when given.
    pub async fn start_on(
        template: RunConfig,
        settings: &WebSettings,
        master: Option<crate::cluster::Master>,
    ) -> anyhow::Result<Self> {
        guard::check_exposure(
            settings.listen,
            settings.auth.as_deref(),
            settings.insecure_no_auth,
        )
        .map_err(anyhow::Error::msg)?;
        if !settings.listen.ip().is_loopback() && settings.auth.is_none() {
            eprintln!(
                "loadgen: warning: the web UI listens on {} without --web-auth \
                 (--web-insecure-no-auth): anyone who reaches it can start load from this machine",
                settings.listen
            );
        }
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot serve the web UI on {} (pick another with --web-port or --web-host)",
                    settings.listen
                )
            })?;
        let addr = listener.local_addr()?;
        let mut session = Session::new(template);
        session.master = master;
        let session = Arc::new(Mutex::new(session));
        let app = routes::router(
            routes::AppState {
                session: session.clone(),
                class_picker: settings.class_picker,
            },
            guard::Credentials(settings.auth.clone()),
            guard::AllowedHosts(
                settings
                    .allowed_hosts
                    .iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .collect(),
            ),
        );
        // The base path is taken off before the UI's routing: by a router around it whose
        // one route, its fallback, is the UI.
        let app =
            axum::Router::new()
                .fallback_service(app)
                .layer(axum::middleware::from_fn_with_state(
                    Arc::<str>::from(settings.base_path.as_str()),
                    base_path::strip,
                ));
        let server = match &settings.tls {
            Some(config) => {
                let listener = tls::TlsListener::new(listener, config.clone());
                tokio::spawn(async move { axum::serve(listener, app).await })
            }
            None => tokio::spawn(async move { axum::serve(listener, app).await }),
        };
        Ok(Self {
            addr,
            session,
            server,
        })
    }

    /// Stops serving.
    pub fn shutdown(self) {
        self.server.abort();
    }
}

/// `loadgen` without `--headless`: serves the UI until Ctrl-C, SIGTERM or SIGHUP (or `--autoquit` after an
/// `--autostart` run); the exit code follows the last run's targets, as headless.
pub async fn serve(template: RunConfig, settings: WebSettings) -> anyhow::Result<u8> {
    serve_on(template, settings, None).await
}

/// As [`serve`], the runs going to the workers of `master` when given (a master with the web
/// UI); the workers are told to quit when the UI quits.
pub async fn serve_on(
    template: RunConfig,
    settings: WebSettings,
    master: Option<crate::cluster::Master>,
) -> anyhow::Result<u8> {
    let mut signals = common::signals::Signals::install()?;
    let ui = WebUi::start_on(template.clone(), &settings, master.clone()).await?;
    let page = settings.page_url(ui.addr);
    tracing::info!(target: "locust.main", "Starting web interface at {page}");
    eprintln!("loadgen: web UI at {page} (Ctrl-C to quit)");
    if settings.autostart {
        let request = SwarmRequest {
            users: template.load.users,
            spawn_rate: template.load.spawn_rate,
            host: None,
            run_time: template.load.run_time,
            user_classes: Vec::new(),
            arrival_rate: None,
            stack: None,
        };
        if let Err(message) = ui.session.lock().await.swarm(request).await {
            anyhow::bail!("--autostart: {message}");
        }
        if let Some(limit) = template.load.run_time {
            tracing::info!(
                target: "locust.main",
                "Run time limit set to {} seconds",
                limit.as_secs()
            );
        }
    }
    let quit = async {
        match (settings.autostart, settings.autoquit) {
            (true, Some(after)) => {
                let handle = ui
                    .session
                    .lock()
                    .await
                    .run
                    .as_ref()
                    .map(|r| r.handle.clone());
                if let Some(handle) = handle {
                    handle.wait().await;
                }
                // Locust's messages for the same moments.
                tracing::info!(target: "locust.main", "--run-time limit reached, stopping test");
                tokio::time::sleep(after).await;
                tracing::info!(target: "locust.main", "--autoquit time reached, shutting down");
            }
            _ => std::future::pending().await,
        }
    };
    let signal = tokio::select! {
        () = quit => None,
        signal = signals.next() => {
            eprintln!("\nloadgen: {}: quitting the web UI", signal.name());
            Some(signal)
        }
    };
    let session = ui.session.lock().await;
    let reports = session
        .run
        .as_ref()
        .map(|run| RunReports::new(&run.config, run.handle.clone()));
    let stop_may_wait = master.is_some()
        || !template.load.stop_timeout.is_zero()
        || template.scenario.has_on_stop();
    match signal {
        // The first signal stops the run going (its reports say so); the next exits at once,
        // with the reports written from the figures in hand.
        Some(first) => tokio::spawn(after_first(signals, first, reports.clone(), stop_may_wait)),
        // --autoquit: the run is over, and a signal exits at once.
        None => tokio::spawn(exit_on_next(signals, reports.clone())),
    };
    // A capacity search ends with the UI: its step under way stops with the signal.
    if let Some(search) = session.search.as_ref().filter(|s| s.goes()) {
        search.stop_by(signal.map_or("the web UI's --autoquit", |s| s.name()));
    }
    let code = match (&session.run, &reports) {
        (Some(run), Some(reports)) => {
            match signal {
                Some(first) => run.handle.stop_by(first.name()),
                None => run.handle.stop(),
            }
            let outcome = run.handle.wait().await;
            let report = Report::of_run(&run.config, &outcome);
            // As Locust's web mode does at quit: the last run's tables, and with --csv its files.
            crate::report::print_err(&crate::report::console::summary(&report));
            if let Err(error) = crate::headless::say_written(&reports.write_final(&report).await) {
                eprintln!("loadgen: error: {error:#}");
            }
            let had_errors = outcome.stats.endpoints.values().any(|e| e.failures > 0)
                || !outcome.stats.exceptions.is_empty();
            crate::exit_code::of_run(
                run.config.exit_code_mode,
                run.config.exit_code_on_error,
                had_errors,
                report.passed(),
            )
        }
        _ => EXIT_OK,
    };
    drop(session);
    if let Some(master) = &master {
        master.quit().await;
    }
    ui.shutdown();
    tracing::info!(target: "locust.main", "Shutting down (exit code {code})");
    Ok(code)
}

/// What the web UI's unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    /// A form's fields, as the routes read them.
    pub fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }
}
