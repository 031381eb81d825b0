{#- Ephemeral, unlike its folder: the macro looks the snapshot up when each run compiles it. -#}
{{ config(materialized='ephemeral') }}

{{ next_unsnapshotted_change(
    ref('stg_product_changes'),
    'snap_products',
    'product_id',
    ['product_name', 'category', 'price', 'currency', 'is_active'],
) }}
