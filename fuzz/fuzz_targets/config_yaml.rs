//! The config file (`config::from_yaml`): arbitrary text never panics, and
//! no error message carries a value taken from the worker's environment.
//! A decoded config's mirrors pass the same start-up check the worker runs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oz_agent_worker::config::from_yaml;

const HOST_SECRET: &str = "host-secret-0xC0FFEE";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains(HOST_SECRET) {
        // The file itself may say it; only values from the environment count.
        return;
    }
    let env = |_: &str| Some(HOST_SECRET.to_owned());
    match from_yaml(text, "fuzz.yaml", &env) {
        Ok(config) => {
            let shown = format!("{config:?}");
            assert!(!shown.contains(HOST_SECRET), "secret in {shown}");
            let _ =
                oz_agent_worker::docker::reference::check_mirrors(&config.docker.registry_mirrors);
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains(HOST_SECRET), "secret in {message}");
        }
    }
});
