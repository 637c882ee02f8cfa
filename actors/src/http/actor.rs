//! The HTTP actor: owns the running interface server on behalf of the supervisor.
//!
//! Owns: driving the bound [`Server`] future and stopping it gracefully on [`StopServer`].
//!
//! Must never: bind sockets itself (the daemon binds through [`super::bind`] before the
//! actors start, so a busy port fails the start, not a restart loop) or handle signals.

use actix::prelude::*;
use actix_web::dev::{Server, ServerHandle};
use tracing::{info, warn};

/// The interface server as an actor. Stops itself when the server ends.
pub struct HttpActor {
    server: Option<Server>,
    handle: ServerHandle,
}

impl HttpActor {
    /// An actor that will run `server` (from [`super::bind`]) once started.
    pub fn new(server: Server) -> Self {
        let handle = server.handle();
        HttpActor {
            server: Some(server),
            handle,
        }
    }
}

impl Actor for HttpActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(server) = self.server.take() else {
            return;
        };
        info!("interface server running");
        let run = async move {
            if let Err(e) = server.await {
                warn!(error = %e, "interface server ended with an error");
            }
        };
        ctx.spawn(run.into_actor(self).map(|_, _, ctx| ctx.stop()));
    }
}

/// Sent by the supervisor at shutdown. Replies once the server has stopped accepting
/// connections and its in-flight requests have finished.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopServer;

impl Handler<StopServer> for HttpActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopServer, _: &mut Self::Context) -> Self::Result {
        let handle = self.handle.clone();
        Box::pin(async move {
            handle.stop(true).await;
            info!("interface server stopped");
        })
    }
}
