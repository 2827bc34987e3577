//! `webex-bulk sim`: the bundled simulator, on a port of its own.

use std::io::Write;
use std::time::Duration;

use crate::cli::SimArgs;

use super::*;

pub(super) async fn sim(args: SimArgs) -> Result<Exit, Failure> {
    let Ok(slow_create_delay) = Duration::try_from_secs_f64(args.slow_create_secs) else {
        return Err(fail(
            Exit::Usage,
            format!(
                "--slow-create-secs must be a number of seconds, 0 or more (got {})",
                args.slow_create_secs
            ),
        ));
    };
    let config = crate::sim::SimConfig {
        token_lifetime: args.token_lifetime.map(Duration::from_secs),
        token_max_requests: args.token_max_requests,
        rotate_refresh_tokens: args.rotate_refresh_tokens,
        rate_limit: args.rate_limit,
        rate_burst: args.rate_burst,
        rate_limit_on_arrival: args.rate_limit_on_arrival,
        retry_after_secs: args.retry_after,
        fail_rate: args.fail_rate,
        drop_rate: args.drop_rate,
        slow_create_rate: args.slow_create_rate,
        slow_create_delay,
        latency: Duration::from_millis(args.latency_ms),
        seed: args.seed,
        people: (1..=args.hosts)
            .map(|i| crate::sim::SimPerson {
                email: format!("host{i}@sim.example.com"),
                first_name: Some("Host".into()),
                last_name: Some(i.to_string()),
                licenses: vec![if i % 2 == 1 {
                    crate::sim::LICENSE_MEETING_ACME
                } else {
                    crate::sim::LICENSE_MEETING_ACME_EU
                }
                .into()],
                ..crate::sim::SimPerson::default()
            })
            .collect(),
        settings_drop_rate: args.settings_drop_rate,
        xml_ticket_ttl: Duration::from_secs(args.xml_ticket_ttl.max(1)),
        xml_rate_limit: args
            .xml_rate_limit
            .map(|n| (n, Duration::from_secs(args.xml_rate_window.max(1)))),
        ..crate::sim::SimConfig::default()
    };
    let mut config = config;
    for site in &args.mapped_site {
        match config.meeting_sites.iter_mut().find(|s| &s.url == site) {
            Some(s) => s.mapped = true,
            None => {
                return Err(fail(
                    Exit::Usage,
                    format!("--mapped-site {site}: the simulator's sites are acme.webex.com and acme-eu.webex.com"),
                ))
            }
        }
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let handle = match crate::sim::start(config, addr).await {
        Ok(h) => h,
        Err(e) => return Err(fail(Exit::Usage, format!("cannot listen on {addr}: {e}"))),
    };
    println!("{}", handle.base_url());
    let _ = std::io::stdout().flush();
    eprintln!(
        "webex-bulk sim: listening on {} (XML API: {}; stats: http://{}/_sim/stats); it accepts the simulator's built-in test credentials listed in the README; Ctrl-C stops it",
        handle.base_url(),
        handle.xml_url(),
        handle.addr()
    );
    let _ = tokio::signal::ctrl_c().await;
    let stats = handle.stats();
    handle.shutdown().await;
    eprintln!(
        "webex-bulk sim: stopped; {}",
        serde_json::to_string(&stats).unwrap_or_default()
    );
    Ok(Exit::Ok)
}
