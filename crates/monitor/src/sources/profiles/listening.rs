//! Which processes listen on a TCP port of this host's network: the sockets in LISTEN state on
//! that port (`/proc/net/tcp`, `/proc/net/tcp6`), then the processes holding one of them among
//! their open files (`/proc/PID/fd`, `socket:[INODE]`).

use std::collections::HashSet;

/// `st` of a socket listening, in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// The pids holding a socket that listens on `port` (empty when none can be read).
pub fn serving(port: u16) -> HashSet<u32> {
    let inodes: HashSet<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return HashSet::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| holds_any(*pid, &inodes))
        .collect()
}

/// The inodes of the sockets of `table` (a `/proc/net/tcp` text) that listen on `port`.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?.parse::<u64>().ok()?;
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (*state == LISTEN && local_port == port).then_some(inode)
        })
        .collect()
}

fn holds_any(pid: u32, inodes: &HashSet<u64>) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
                .is_some_and(|inode| inodes.contains(&inode))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sockets_listening_on_the_port_are_read_from_the_table() {
        // Port 8000 (1F40) listening, one of its connections established, port 8001 listening.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
   1: 0100007F:1F40 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1\n\
   2: 0100007F:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 8000), [111]);
        assert_eq!(listening_inodes(table, 8001), [333]);
        assert!(listening_inodes(table, 9000).is_empty());
    }

    #[test]
    fn this_process_is_found_serving_a_port_it_listens_on() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let pids = serving(port);
        assert!(pids.contains(&std::process::id()), "{pids:?} on {port}");
        drop(listener);
        assert!(!serving(port).contains(&std::process::id()));
    }
}
