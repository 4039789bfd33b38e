//! The seed's resource thresholds: a target and a warning level for each host figure.

/// Where a value stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Under the target.
    Ok,
    /// Over the target, under the warning.
    OverTarget,
    /// Over the warning.
    Warning,
}

/// Target and warning percentages.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// CPU: target, warning.
    pub cpu: (f64, f64),
    /// Memory.
    pub memory: (f64, f64),
    /// Disk I/O, percent of capacity.
    pub disk: (f64, f64),
    /// Network, percent of capacity.
    pub network: (f64, f64),
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            cpu: (70.0, 85.0),
            memory: (80.0, 90.0),
            disk: (80.0, 90.0),
            network: (70.0, 85.0),
        }
    }
}

fn level(value: f64, (target, warning): (f64, f64)) -> Level {
    if value >= warning {
        Level::Warning
    } else if value >= target {
        Level::OverTarget
    } else {
        Level::Ok
    }
}

impl Thresholds {
    /// CPU level.
    pub fn cpu(&self, value: f64) -> Level {
        level(value, self.cpu)
    }
    /// Memory level.
    pub fn memory(&self, value: f64) -> Level {
        level(value, self.memory)
    }
    /// Disk level.
    pub fn disk(&self, value: f64) -> Level {
        level(value, self.disk)
    }
    /// Network level.
    pub fn network(&self, value: f64) -> Level {
        level(value, self.network)
    }

    /// The thresholds of a metric, by its name.
    pub fn for_metric(&self, name: &str) -> Option<(f64, f64)> {
        match name {
            "host_cpu_pct" => Some(self.cpu),
            "host_memory_pct" => Some(self.memory),
            "host_disk_pct" => Some(self.disk),
            "host_net_pct" => Some(self.network),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        let t = Thresholds::default();
        assert_eq!(t.cpu(69.9), Level::Ok);
        assert_eq!(t.cpu(70.0), Level::OverTarget);
        assert_eq!(t.cpu(85.0), Level::Warning);
        assert_eq!(t.memory(85.0), Level::OverTarget);
        assert_eq!(t.network(86.0), Level::Warning);
    }
}
