"""The one place that names the Elasticsearch version the project runs and ships."""

#: Elasticsearch (and Kibana) version used by the local node, docker-compose.yml and the tests.
ES_VERSION = "8.19.21"
#: Maven coordinates of the integration-test distribution used for the local node.
ES_MAVEN_ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
