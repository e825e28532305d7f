"""Run the service on one machine: moto as AWS, the real handlers, the HTTP API and the stream poller."""
