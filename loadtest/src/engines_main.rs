//! `tollgate-engines`: the search engine stand-ins of [`tollgate_loadtest::engines`] as a
//! process, over a generated corpus, for load runs of the search stage (`loadtest/search_cost.py`).
//! Every engine kind gets `--docs` documents; the web and paper results are pages this server
//! also serves (`/page/{engine}/N`, about `--page-bytes` of HTML with boilerplate). `GET /questions` lists
//! questions the corpus answers.

use clap::Parser;
use tollgate_loadtest::engines;

#[derive(Parser, Debug)]
#[command(name = "tollgate-engines", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TOLLGATE_ENGINES_LISTEN", default_value = "127.0.0.1:9200")]
    listen: String,
    /// Documents per engine kind.
    #[arg(long, env = "TOLLGATE_ENGINES_DOCS", default_value_t = 500)]
    docs: usize,
    /// Approximate size of each result page, in bytes.
    #[arg(long, env = "TOLLGATE_ENGINES_PAGE_BYTES", default_value_t = 20_000)]
    page_bytes: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen).await?;
        let addr = listener.local_addr()?;
        let (docs, pages, questions) = engines::corpus(&addr.to_string(), args.docs, args.page_bytes);
        let handle = engines::spawn_with_questions(listener, docs, pages, questions)?;
        eprintln!("tollgate-engines listening on {}", handle.addr);
        tokio::signal::ctrl_c().await?;
        Ok(())
    })
}
