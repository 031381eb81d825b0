{#- Schemas named by layer (staging, marts), not prefixed with the target schema: BI tools read `marts.*`.
    On the trino target they are prefixed with PLATFORM_TRINO_SCHEMA_PREFIX (default `trino_`: `trino_marts`),
    since Trino writes to the Iceberg catalog, whose `marts` namespace the platform's builds publish to. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- elif target.type == 'trino' -%}
        {{ env_var('PLATFORM_TRINO_SCHEMA_PREFIX', 'trino_') ~ custom_schema_name }}
    {%- else -%}
        {{ custom_schema_name }}
    {%- endif -%}
{%- endmacro %}
