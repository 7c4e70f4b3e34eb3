use tideflow::prelude::*;

mod tasks {
    use tideflow::prelude::*;

    #[task]
    pub fn load() -> Vec<String> {
        vec![" a ".into(), "b".into()]
    }

    #[task]
    pub fn clean(s: String) -> String {
        s.trim().to_owned()
    }

    pub mod deeper {
        use tideflow::prelude::*;

        #[task]
        pub fn count(xs: Vec<String>) -> usize {
            xs.len()
        }
    }
}

mod more {
    use tideflow::prelude::*;

    #[task]
    pub(crate) fn shout(s: String) -> String {
        s.to_uppercase()
    }
}

use more::shout;
use tasks::clean as tidy;
use tasks::deeper;

flow! {
    /// Tasks by path, imported, renamed.
    pub fn by_path() -> usize {
        let raw = tasks::load();
        let cleaned = tasks::clean.map(raw);
        let tidied = tidy.map(cleaned);
        let loud = shout.map(tidied);
        let n = self::tasks::deeper::count(loud);
        deeper::count(crate::tasks::clean.map(raw))
    }
}

mod flows {
    use tideflow::prelude::*;

    use super::tasks::clean;

    flow! {
        pub fn in_module() -> Vec<String> {
            clean.map(super::tasks::load())
        }
    }
}

fn main() {
    let _ = flows::in_module();
}
