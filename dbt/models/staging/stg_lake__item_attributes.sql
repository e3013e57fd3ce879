with

source as (
    {#- source() first, so the lake shows in lineage; the macro picks the engine's reader -#}
    {%- set lake_item_attributes = source('lake', 'item_attributes') %}
    select * from {{ read_lake_item_attributes(lake_item_attributes) }}
),

renamed as (
    select
        cast(source as string) as source_format,
        cast(item_id as string) as item_id,
        cast(attribute as string) as attribute,
        -- `value` and `position` read as keywords in places; plain names from here on
        cast(value as string) as attribute_value,
        cast(position as int) as value_position
    from source
),

final as (
    select
        source_format,
        item_id,
        attribute,
        attribute_value,
        value_position
    from renamed
)

select * from final
