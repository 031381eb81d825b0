{#- The envelope and Kafka lineage columns every staging model exposes, renamed the same way. -#}
{% macro envelope_columns() -%}
        event_id,
        event_at,
        user_id,
        session_id,
        correlation_id,
        source as event_source,
        schema_version,
        kafka_topic,
        kafka_partition,
        kafka_offset,
        ingested_at
{%- endmacro %}
