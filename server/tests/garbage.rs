//! Garbage in, errors out: random and half-valid bytes sent as Flight SQL commands, tickets,
//! prepared-statement handles, action bodies, handshake payloads and DoPut descriptors. Every
//! call must end in an error status (never a panic, never a dropped connection), and the server
//! must answer a real query afterwards.

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, Any,
    CommandPreparedStatementQuery, CommandStatementQuery, ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::{Action, FlightData, FlightDescriptor, HandshakeRequest, Ticket};
use prost::Message;

mod support;
use support::Server;

/// A small deterministic generator (xorshift): the same cases on every run.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn take(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Half-valid inputs: real envelopes around garbage, real handles cut short.
fn cases(random: &mut Bytes) -> Vec<Vec<u8>> {
    let mut cases = Vec::new();
    for _ in 0..60 {
        cases.push(random.take(64));
        let mut wrapped = Any {
            type_url: "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery".into(),
            value: random.take(48).into(),
        }
        .encode_to_vec();
        cases.push(wrapped.clone());
        wrapped.truncate((random.next() as usize) % (wrapped.len() + 1));
        cases.push(wrapped);
        let mut handle = b"TRB1".to_vec();
        handle.extend(random.take(40));
        cases.push(
            TicketStatementQuery {
                statement_handle: handle.clone().into(),
            }
            .as_any()
            .encode_to_vec(),
        );
        cases.push(
            CommandPreparedStatementQuery {
                prepared_statement_handle: handle.into(),
            }
            .as_any()
            .encode_to_vec(),
        );
    }
    cases.push(
        CommandStatementQuery {
            query: "SELECT \u{0}\u{ffff} FROM".into(),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec(),
    );
    cases
}

#[tokio::test]
async fn garbage_gets_errors_and_the_server_lives_on() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let mut client = FlightServiceClient::new(server.channel().await);
    let mut random = Bytes(0x9E37_79B9_7F4A_7C15);
    let mut refused = 0;
    for bytes in cases(&mut random) {
        let info = client
            .get_flight_info(FlightDescriptor::new_cmd(bytes.clone()))
            .await;
        let get = match client.do_get(Ticket::new(bytes.clone())).await {
            Ok(mut stream) => stream.get_mut().message().await.map(|_| ()),
            Err(status) => Err(status),
        };
        let mut outcomes = vec![info.map(|_| ()), get];
        for action in [
            "CreatePreparedStatement",
            "ClosePreparedStatement",
            "CancelFlightInfo",
            "CancelQuery",
            "x",
        ] {
            let result = match client.do_action(Action::new(action, bytes.clone())).await {
                Ok(mut stream) => stream.get_mut().message().await.map(|_| ()),
                Err(status) => Err(status),
            };
            outcomes.push(result);
        }
        let handshake = client
            .handshake(futures::stream::iter([HandshakeRequest {
                protocol_version: 0,
                payload: bytes.clone().into(),
            }]))
            .await
            .map(|_| ());
        let put = client
            .do_put(futures::stream::iter([FlightData {
                flight_descriptor: Some(FlightDescriptor::new_cmd(bytes.clone())),
                data_header: random.take(16).into(),
                data_body: bytes.clone().into(),
                ..Default::default()
            }]))
            .await;
        let put = match put {
            Ok(mut stream) => stream.get_mut().message().await.map(|_| ()),
            Err(status) => Err(status),
        };
        outcomes.push(put);
        for outcome in outcomes {
            if let Err(status) = outcome {
                assert_ne!(status.code(), tonic::Code::Unknown, "{status}");
                // arrow-flight decodes the Flight SQL envelope before our code runs and reports
                // a malformed one as INTERNAL; everything past it is ours and says what is wrong.
                if status.code() == tonic::Code::Internal {
                    assert!(
                        status.message().contains("decode")
                            || status.message().contains("ParseError"),
                        "{status}"
                    );
                }
                refused += 1;
            }
        }
        // The open server lets any handshake in.
        assert!(handshake.is_ok());
    }
    assert!(refused > 1000, "only {refused} refusals");
    // Still answering real queries.
    let real = ActionCreatePreparedStatementRequest {
        query: "SELECT 1".into(),
        transaction_id: None,
    };
    let mut answer = client
        .do_action(Action::new(
            "CreatePreparedStatement",
            real.as_any().encode_to_vec(),
        ))
        .await
        .unwrap();
    assert!(answer.get_mut().message().await.unwrap().is_some());
    let close = ActionClosePreparedStatementRequest {
        prepared_statement_handle: b"TRB1\x01\x00\x00\x00\x00".to_vec().into(),
    };
    client
        .do_action(Action::new(
            "ClosePreparedStatement",
            close.as_any().encode_to_vec(),
        ))
        .await
        .unwrap();
    let stderr = server.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
